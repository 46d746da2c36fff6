"""The GPU check, ready for the first machine that has one: ``python -m benchmarks.gpu --out gpu.json``.

Rows, each appended to ``--out`` as soon as it is done (a run cut short still reports), within
``--budget-s`` (default 480 s; rows left when it runs out are listed as skipped):

* ``equality/<family>``: attnviz's recorded weights and logits against transformers' eager
  attention with ``output_attentions``, float32, for every tiny text family (also on the CPU);
* ``page/<page>/<step>``: each page's library path on a tiny llama in bfloat16 on the GPU,
  against float32 on the same GPU within a bf16 tolerance;
* ``long/...``: a SmolLM2-shaped model (random weights) summarised at 4,096 tokens against one
  SDPA forward, at 32,768 tokens with peak GPU memory, and Llama-3-8B-shaped rows at 4,096.

No weights can travel to a lent machine, so every model has random weights of real shapes, and a
word-level tokenizer built here (one token per word) gives prompts an exact length.

A lent machine has torch with CUDA and transformers 5.17 (attnviz imports, and these rows pass, with
5.17: checked on the CPU). Carry wheels for what it lacks (``pip download --no-deps --only-binary=:all:
--python-version 3.12 -d .whl ...`` here, ``pip install --no-index --no-deps --target "$T" .whl/*.whl``
and ``PYTHONPATH="$T"`` there): pysbd (``import attnviz`` needs it), accelerate (a device map onto
``cuda:N``), and bertviz, plotly and pillow for the ``explore/bertviz`` step (without them only that
step fails). Run it from the repository root.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import Tokenizer, models, pre_tokenizers

import attnviz
from attnviz import hooks
from attnviz.heads.ablation import ablate_heads
from attnviz.heads.aggregate import value_norms
from attnviz.heads.stats import head_stats
from attnviz.heads.summary import summarise
from attnviz.hooks import Site
from attnviz.learn.recompute import first_layer
from attnviz.learn.verify import verify
from attnviz.masks import builders as masks
from attnviz.masks.runs import compare_mask, read_masks
from attnviz.models.loading import LoadedModel, wrap
from attnviz.sources.attribution import METHODS, attribute
from attnviz.sources.calibration import calibrate
from attnviz.tracing.trace import Trace, record, trace
from tests.tiny_models import save_tiny

Row = dict[str, object]
# Text families whose tiny models load through load_model and record one self-attention stack.
EQUALITY_FAMILIES = (
    "gpt2", "llama", "gemma2", "mistral", "qwen2", "phi3", "gpt_neox", "opt", "bert", "roberta", "distilbert",
)  # fmt: skip
VOCAB_WORDS = 4096
TEXT = "w1 w2 w3 w4 w5 w6 w7 w8 w1 w2 w3 w4 w5 w6 w7 w8"
PASSAGES = ("w10 w11 w12 w13.", "w20 w21 w22 w23.", "w30 w31 w32 w33.")
HEADS = [(0, 1), (1, 2)]  # any fixed heads: calibration has its own row
# A few bf16 units at 1.0: GPU kernels may sum in other orders than the CPU (tests/test_bf16.py holds 5e-3).
WEIGHTS_ATOL = 2e-2
SMOLLM2_SHAPE: dict[str, object] = {
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "vocab_size": 49152, "rope_theta": 100000.0, "tie_word_embeddings": True,
}  # fmt: skip
LLAMA3_8B_SHAPE: dict[str, object] = {
    "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 8, "vocab_size": 128256, "rope_theta": 500000.0, "tie_word_embeddings": False,
}  # fmt: skip


def word_tokenizer(words: int = VOCAB_WORDS) -> transformers.PreTrainedTokenizerFast:
    """A word-level tokenizer over ``w0 .. w{words-1}``, [UNK] and [PAD]: one token per word."""
    vocab = {"[UNK]": 0, "[PAD]": 1} | {f"w{i}": i + 2 for i in range(words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]"
    )


def words(n: int) -> str:
    """A prompt of exactly ``n`` tokens for :func:`word_tokenizer`."""
    return " ".join(f"w{(7 * i) % VOCAB_WORDS}" for i in range(n))


def tiny_folder(family: str, root: Path) -> Path:
    """The family's tiny random model with the word tokenizer, saved once under ``root``."""
    folder = root / family
    if not (folder / "config.json").exists():
        save_tiny(family, folder, word_tokenizer())
    return folder


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, int, object]:
    """(median seconds of ``repeats`` runs after a warm-up, peak GPU bytes of a run (0 on CPU), result)."""
    result = run()
    seconds = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        start = time.perf_counter()
        result = run()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    return statistics.median(seconds), peak, result


# --- equality with eager ------------------------------------------------------------------------


def equality(family: str, device: str, root: Path) -> Row:
    """Recorded weights and logits (or last hidden states) against eager ``output_attentions``, float32."""
    folder = tiny_folder(family, root)
    loaded = attnviz.load_model(str(folder), device=device, dtype="float32")
    eager = type(loaded.model).from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    eager = eager.to(loaded.device).eval()
    # The word tokenizer's own ids: a folder's model type may make AutoTokenizer pick its family's (qwen2).
    ids = word_tokenizer()(TEXT, return_tensors="pt")["input_ids"].to(loaded.device)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    outputs, recording = record(loaded, inputs)
    extra = {"use_cache": False} if hasattr(eager.config, "use_cache") else {}
    with torch.inference_mode():
        reference = eager(**inputs, output_attentions=True, **extra)
    ours = recording.weights[loaded.main_stack][0]
    theirs = torch.stack(reference.attentions)[:, 0].float().cpu().numpy()
    name = "logits" if getattr(outputs, "logits", None) is not None else "last_hidden_state"
    output_diff = (getattr(outputs, name) - getattr(reference, name)).abs().max().item()
    weights_diff = float(np.abs(ours - theirs).max())
    return {
        "weights_max_abs_diff": weights_diff, f"{name}_max_abs_diff": output_diff,
        "device": loaded.device_label, "ok": weights_diff <= 1e-6 and output_diff <= 1e-5,
    }  # fmt: skip


# --- each page's library path in bf16 -----------------------------------------------------------


def bertviz_weights(traced: Trace) -> np.ndarray:
    """The head view's weights as its page sends them (integers over ``scale``), from the library's HTML."""
    from attnviz.views import bertviz as bv  # bertviz, plotly, pillow: perhaps not on a lent machine

    html = bv.build_view(traced, "head", bv.default_selection(traced, "head")).html
    data = json.loads(html.split("id='attnviz-bertviz-data'>", 1)[1].split("</script>", 1)[0])
    return np.asarray(data["attention"][0]["attn"], dtype=np.float64) / data["scale"]


def page_steps(loaded: LoadedModel) -> dict[str, Callable[[], np.ndarray]]:
    """The numbers each page draws, from its library calls, one step each: {page/step: run}."""
    traced = functools.cache(lambda: trace(loaded, TEXT))
    ablated = {Site("decoder", 0): (0, 1)}
    ids = loaded.tokenizer(TEXT)["input_ids"]
    sliding = masks.sliding_window(len(ids), 3)
    short = " ".join(TEXT.split()[:12])  # the walkthrough takes at most 16 tokens

    def attributed(method: str) -> np.ndarray:
        result = attribute(loaded, "w1 w2?", PASSAGES, method=method, answer="w11 w12", heads=HEADS)
        return result.scores[method]

    steps: dict[str, Callable[[], np.ndarray]] = {
        "explore/trace": lambda: traced().attention,
        "explore/summary": lambda: summarise(loaded, TEXT).thumbnails,
        "explore/statistics": lambda: head_stats(traced().attention, traced().layers, traced().heads).entropy,
        "explore/value_norms": lambda: value_norms(loaded, traced()).norms,
        "explore/ablate": lambda: ablate_heads(loaded, traced(), ablated, 5).intervened.probs,
        "explore/bertviz": lambda: bertviz_weights(traced()),
        "masks/compare": lambda: compare_mask(loaded, ids, sliding).masked.attention,
        "masks/read": lambda: read_masks(loaded, [TEXT, "w1 w2"]).groups[0].allowed.astype(np.float32),
        "learn/walkthrough": lambda: first_layer(loaded, short).weights,
        "learn/verify": lambda: np.array([verify(loaded, short, "causal").passed], dtype=np.float32),
        "sources/calibrate": lambda: calibrate(loaded, n_cases=4).head_accuracy,
    }  # fmt: skip
    for method in METHODS:
        steps[f"sources/attribute/{method}"] = functools.partial(attributed, method)
    return steps


def pages(device: str, root: Path) -> list[Row]:
    """Every page's library path in bfloat16 against float32 on ``device``, one row per step.

    The difference is absolute for numbers up to 1 (weights) and relative beyond (entropies, norms).
    """
    folder = str(tiny_folder("llama", root))
    bf16 = page_steps(attnviz.load_model(folder, device=device, dtype="bfloat16"))
    fp32 = page_steps(attnviz.load_model(folder, device=device, dtype="float32"))
    rows: list[Row] = []
    for step, run_bf16 in bf16.items():
        start = time.perf_counter()
        try:
            ours = run_bf16()
            seconds = time.perf_counter() - start
            reference = fp32[step]()
            diff = float(np.abs(ours - reference).max() / max(1.0, np.abs(reference).max()))
        except Exception as error:  # noqa: BLE001 - one step's failure is its row; the other steps still run
            rows.append(failure(f"page/{step}", error))
            continue
        rows.append({"name": f"page/{step}", "bf16_seconds": round(seconds, 3), "max_abs_diff": diff,
                     "tolerance": WEIGHTS_ATOL, "ok": diff <= WEIGHTS_ATOL})  # fmt: skip
    return rows


# --- long contexts ------------------------------------------------------------------------------


def shaped(shape: dict[str, object], context: int, device: str, name: str) -> LoadedModel:
    """A Llama of ``shape`` with random bf16 weights built straight on ``device``, with the word tokenizer."""
    config = transformers.LlamaConfig(**shape, max_position_embeddings=context)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return wrap(model, word_tokenizer(), name)


def long_context(loaded: LoadedModel, n: int, repeats: int) -> Row:
    """Summary of ``n`` tokens against one forward with transformers' own SDPA attention (no weights kept),
    medians after a warm-up, with each side's peak GPU memory."""
    text = words(n)
    ids = loaded.tokenizer(text, return_tensors="pt")["input_ids"].to(loaded.device)
    loaded.model.set_attn_implementation("sdpa")
    try:
        with torch.inference_mode():
            sdpa_s, sdpa_peak, _ = timed(
                lambda: loaded.model(input_ids=ids, use_cache=False, logits_to_keep=1), loaded.device, repeats
            )
    finally:
        loaded.model.set_attn_implementation(hooks.IMPLEMENTATION)
    summary_s, summary_peak, summary = timed(lambda: summarise(loaded, text), loaded.device, repeats)
    finite = bool(np.isfinite(summary.head_stats).all())
    return {
        "tokens": summary.n_tokens, "repeats": repeats, "sdpa_s": round(sdpa_s, 4),
        "summary_s": round(summary_s, 4), "ratio": round(summary_s / sdpa_s, 2),
        "sdpa_peak_gb": round(sdpa_peak / 1e9, 2), "summary_peak_gb": round(summary_peak / 1e9, 2),
        "device": loaded.device_label, "ok": summary.n_tokens == n and finite,
    }  # fmt: skip


# --- running rows -------------------------------------------------------------------------------


def plan(device: str, root: Path, quick: bool) -> list[tuple[str, Callable[[], Row | list[Row]]]]:
    """The rows to run on ``device``: equality everywhere; bf16 pages and long contexts on CUDA only."""
    rows: list[tuple[str, Callable[[], Row | list[Row]]]] = [
        (f"equality/{family}", lambda family=family: equality(family, device, root))
        for family in (EQUALITY_FAMILIES[:3] if quick else EQUALITY_FAMILIES)
    ]
    if not device.startswith("cuda"):
        return rows
    rows.append(("page", lambda: pages(device, root)))
    smollm2: dict[str, LoadedModel] = {}

    def smollm2_row(n: int, repeats: int) -> Row:
        if "model" not in smollm2:
            smollm2["model"] = shaped(SMOLLM2_SHAPE, 32768, device, "smollm2-shaped")
        return long_context(smollm2["model"], n, repeats)

    rows += [
        ("long/smollm2/4096", lambda: smollm2_row(4096, 3)),
        ("long/smollm2/32768", lambda: smollm2_row(32768, 1)),
        ("long/llama3-8b/4096", lambda: long_context(shaped(LLAMA3_8B_SHAPE, 8192, device, "8b"), 4096, 3)),
    ]  # fmt: skip
    return rows


def failure(name: str, error: Exception) -> Row:
    """The row of a step that raised: its error, kept short."""
    return {"name": name, "ok": False, "error": f"{type(error).__name__}: {error}"[:2000]}


def run(
    rows: list[tuple[str, Callable[[], Row | list[Row]]]], out: Path, budget_s: float, header: Row
) -> dict[str, object]:
    """Run ``rows`` in order, rewriting ``out`` after each; a failing row reports its error, and rows
    past ``budget_s`` are listed as skipped."""
    report: dict[str, object] = {**header, "rows": []}
    done: list[Row] = report["rows"]  # type: ignore[assignment]
    start = time.perf_counter()
    for name, make in rows:
        if time.perf_counter() - start > budget_s:
            done.append({"name": name, "ok": False, "skipped": f"time budget of {budget_s:.0f} s spent"})
        else:
            began = time.perf_counter()
            try:
                made = make()
                results = made if isinstance(made, list) else [{"name": name, **made}]
            except Exception as error:  # noqa: BLE001 - a failure is the row's report; later rows still run
                results = [failure(name, error)]
            for result in results:
                result.setdefault("seconds", round(time.perf_counter() - began, 3))
            done.extend(results)
        _write(out, report)
    report["all_ok"] = all(row["ok"] for row in done)
    _write(out, report)
    return report


def _write(out: Path, report: dict[str, object]) -> None:
    """Atomic write: a reader (or a run killed mid-write) never sees half a file."""
    partial = out.with_name(out.name + ".partial")
    partial.write_text(json.dumps(report, indent=1, default=float))
    os.replace(partial, out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON report, rewritten after every row")
    parser.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if present)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="start no row after this many seconds")
    parser.add_argument("--quick", action="store_true", help="three equality families only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    header = {
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__,
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as root:
        # The tiny models are written here and loaded as folders: the operator's own check allows this root.
        allowed = os.environ.get("ATTNVIZ_MODEL_DIRS")
        os.environ["ATTNVIZ_MODEL_DIRS"] = os.pathsep.join(filter(None, [allowed, root]))
        try:
            report = run(plan(device, Path(root), args.quick), args.out, args.budget_s, header)
        finally:
            if allowed is None:
                os.environ.pop("ATTNVIZ_MODEL_DIRS")
            else:
                os.environ["ATTNVIZ_MODEL_DIRS"] = allowed
    for row in report["rows"]:  # type: ignore[union-attr]
        print(json.dumps(row, default=float))
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
