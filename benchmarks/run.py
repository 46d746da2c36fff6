"""Speed, memory and payload: our figure against the tool a user would use instead, in the same run.

Each (case, variant, size) runs in a fresh subprocess so peak memory is its own:
the process resets its peak-RSS mark (``/proc/self/clear_refs``) after loading the
model and reads ``VmHWM`` after the measured work. Times are the best of a few runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.quality import attribution_quality, format_quality

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (128, 512, 1024, 2048)
QUICK_SIZES = (32,)
QUICK_QUALITY_CASES = 2
FIRST_VIEW_TOKENS = 512
BERTVIZ_MAX_TOKENS = 128  # bertviz's model view of all 270 heads is ~200 MB here already
MODEL = "smollm2-135m-instruct"
TEXT = (
    "Attention lets every token look at every other token and decide what matters. "
    "In a decoder, a causal mask hides the future, so each position reads only what came before it. "
    "Some heads look at the previous token, some copy from earlier repeats, and many rest on the first token. "
)


@dataclass(frozen=True)
class Measurement:
    """One variant at one size: wall time (best of runs) and peak memory above the loaded model."""

    seconds: float
    peak_mb: float | None
    value: float | None = None  # a non-time figure (e.g. bytes); when set, it is what gets compared


@dataclass(frozen=True)
class Row:
    case: str
    tokens: int
    ours: float
    baseline: float
    ratio: float
    unit: str
    ours_peak_mb: float | None
    baseline_peak_mb: float | None
    note: str = ""


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _input_ids(tokenizer, tokens: int):  # noqa: ANN001, ANN202 - tokenizer in, tensor out
    import torch

    ids = tokenizer(TEXT * (tokens // 20 + 2))["input_ids"][:tokens]
    return {"input_ids": torch.tensor([ids])}


def _timed(work: Callable[[], object], repeats: int) -> Measurement:
    """Best-of-``repeats`` time of ``work`` and its peak memory above the RSS before it."""
    best = float("inf")
    peak = 0.0
    for _ in range(repeats):
        before = _rss_mb()
        _reset_peak()
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
        peak = max(peak, _peak_mb() - before)
        del result
    return Measurement(seconds=best, peak_mb=peak)


def _variant(name: str, tokens: int) -> Measurement:
    """Run one measured variant in this process (called by the worker subprocess)."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 2))
    repeats = 1 if tokens >= 1024 else 2
    if name == "load_gguf":
        from transformers import AutoModelForCausalLM

        from attnviz.loading import BUILTINS, SMOLLM2_GGUF

        folder = BUILTINS[MODEL].package_dir()
        return _timed(lambda: AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF), 1)
    import attnviz
    from attnviz.trace import record

    if name == "load_cached":
        attnviz.load_model(MODEL)  # make sure the conversion exists; the timed load is a cache hit
        return _timed(lambda: attnviz.load_model(MODEL), 2)
    loaded = attnviz.load_model(MODEL)
    inputs = _input_ids(loaded.tokenizer, tokens)
    if name.startswith("attribution_"):
        return _attribution(loaded, name)
    if name == "bertviz_model_view":
        from benchmarks.payload import bertviz_model_view_bytes

        text = loaded.tokenizer.decode(inputs["input_ids"][0])
        return Measurement(seconds=0.0, peak_mb=None, value=float(bertviz_model_view_bytes(attnviz.trace(loaded, text))))
    if name in {"eager_attentions", "sdpa_forward"}:
        from transformers import AutoModelForCausalLM

        implementation = "eager" if name == "eager_attentions" else "sdpa"
        model = AutoModelForCausalLM.from_pretrained(loaded.model.name_or_path, attn_implementation=implementation)
        model.eval()
        del loaded

        def plain() -> object:
            with torch.inference_mode():
                return model(**inputs, use_cache=False, output_attentions=name == "eager_attentions")

        plain()  # warm-up
        return _timed(plain, repeats)
    work: dict[str, Callable[[], object]] = {
        "trace_full": lambda: record(loaded, inputs, dtype=torch.float16, last_logits_only=True),
        "trace_layer": lambda: record(loaded, inputs, layers=[loaded.n_layers // 2]),
    }
    work[name]()  # warm-up
    return _timed(work[name], repeats)


def _attribution(loaded: "LoadedModel", name: str) -> Measurement:  # noqa: F821 - lazy import
    """Attention attribution (one pass) or leave-one-out ablation of the same answer over 8 passages."""
    from attnviz.attribution import generate_answer
    from attnviz.passage_attention import answer_logprobs, passage_attention
    from attnviz.passages import build_prompt
    from attnviz.source_ablation import ablate_sources
    from benchmarks.quality import RAG_CASES

    cases = [json.loads(line) for line in RAG_CASES.read_text().splitlines() if line.strip()]
    question = cases[0]["question"]
    passages = cases[0]["passages"] + cases[1]["passages"]  # 8 passages, the answer in one
    prompt = build_prompt(loaded, question, passages)
    answer = generate_answer(loaded, prompt.ids, max_new_tokens=24)  # generation is not timed
    if name == "attribution_attention":
        passage_attention(loaded, prompt, answer)  # warm-up
        return _timed(lambda: passage_attention(loaded, prompt, answer), 2)
    base = answer_logprobs(loaded, prompt.ids, answer)
    return _timed(lambda: ablate_sources(loaded, prompt, answer, base), 1)


def _run_variant(name: str, tokens: int) -> Measurement:
    """Measure a variant in a fresh subprocess so its peak memory is its own."""
    command = [sys.executable, "-m", "benchmarks.run", "--worker", name, str(tokens)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker {name} {tokens} failed:\n{result.stderr[-3000:]}")
    return Measurement(**json.loads(result.stdout.strip().splitlines()[-1]))


def _row(case: str, tokens: int, mine: Measurement, theirs: Measurement, note: str = "") -> Row:
    """Compare two measurements: by ``value`` when both have one (bytes), else by time."""
    by_value = mine.value is not None and theirs.value is not None
    ours, baseline = (mine.value, theirs.value) if by_value else (mine.seconds, theirs.seconds)
    return Row(
        case=case,
        tokens=tokens,
        ours=round(ours, 4),
        baseline=round(baseline, 4),
        ratio=round(ours / baseline, 4),
        unit="B" if by_value else "s",
        ours_peak_mb=None if mine.peak_mb is None else round(mine.peak_mb, 1),
        baseline_peak_mb=None if theirs.peak_mb is None else round(theirs.peak_mb, 1),
        note=note,
    )


def _compare(case: str, tokens: int, ours: str, baseline: str, note: str = "") -> Row:
    return _row(case, tokens, _run_variant(ours, tokens), _run_variant(baseline, tokens), note)


def _first_view(tokens: int) -> Measurement:
    """Seconds to the drawn head grid and websocket bytes, in a real browser (:mod:`benchmarks.first_view`)."""
    from transformers import AutoTokenizer

    from attnviz.loading import builtin_folder

    tokenizer = AutoTokenizer.from_pretrained(builtin_folder(MODEL))
    prompt = Path(tempfile.mkstemp(suffix=".txt")[1])
    prompt.write_text(tokenizer.decode(_input_ids(tokenizer, tokens)["input_ids"][0]))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.first_view", str(prompt)],
        capture_output=True, text=True, check=False, timeout=900, cwd=ROOT,
    )  # fmt: skip
    prompt.unlink()
    if result.returncode != 0:
        raise RuntimeError(f"first_view {tokens} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    return Measurement(seconds=measured["seconds"], peak_mb=None, value=measured["bytes"])


def _browser_rows(sizes: Sequence[int], progress: Callable[[str], None]) -> list[Row]:
    """payload_explore at every size and first_view at 512 tokens (or the largest quick size)."""
    rows: list[Row] = []
    bertviz_size = min(BERTVIZ_MAX_TOKENS, min(sizes))
    progress(f"bertviz model view @ {bertviz_size}")
    bertviz = _run_variant("bertviz_model_view", bertviz_size)
    view_size = FIRST_VIEW_TOKENS if FIRST_VIEW_TOKENS in sizes else max(sizes)
    for tokens in sizes:
        progress(f"payload_explore @ {tokens} (browser)")
        view = _first_view(tokens)
        note = "websocket bytes in Chromium vs bertviz model_view HTML"
        if tokens != bertviz_size:
            note += f" (bertviz measured at {bertviz_size} tokens: it cannot build larger views usefully)"
        rows.append(_row("payload_explore", tokens, view, bertviz, note))
        if tokens == view_size:
            progress(f"first_view @ {tokens}: model forward alone")
            forward = _run_variant("sdpa_forward", tokens)
            time_only = Measurement(seconds=view.seconds, peak_mb=None)
            rows.append(_row("first_view", tokens, time_only, forward, "prompt to drawn grid vs model forward"))
    return rows


def run(sizes: Sequence[int], progress: Callable[[str], None] = print, browser: bool = True) -> list[Row]:
    """All speed, memory and payload cases at ``sizes``; each row's baseline is measured in this same run."""
    rows: list[Row] = []
    for tokens in sizes:
        progress(f"trace_full @ {tokens}")
        rows.append(_compare("trace_full", tokens, "trace_full", "eager_attentions", "trace path (fp16, last-position logits) vs eager output_attentions"))
        progress(f"trace_layer @ {tokens}")
        rows.append(_compare("trace_layer", tokens, "trace_layer", "sdpa_forward", "one layer vs SDPA forward"))
    progress("attribution_attention")
    rows.append(
        _compare(
            "attribution_attention", 0, "attribution_attention", "attribution_ablation",
            "8 passages, same answer: one traced pass vs leave-one-out (9 passes)",
        )
    )
    progress("model_load_cached")
    rows.append(_compare("model_load_cached", 0, "load_cached", "load_gguf", "safetensors cache vs GGUF"))
    if browser:
        rows.extend(_browser_rows(sizes, progress))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of the rows (also what the README shows)."""
    header = "| case | tokens | ours | baseline | ratio | ours peak MB | baseline peak MB | note |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        peak = lambda v: "" if v is None else f"{v:,.0f}"  # noqa: E731
        amount = lambda v: f"{v / 1e6:.2f} MB" if r.unit == "B" else f"{v:.3g} s"  # noqa: E731
        lines.append(
            f"| {r.case} | {r.tokens or ''} | {amount(r.ours)} | {amount(r.baseline)} | {r.ratio:.3f} "
            f"| {peak(r.ours_peak_mb)} | {peak(r.baseline_peak_mb)} | {r.note} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """A one-line description of the machine the benchmark ran on."""
    import torch

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, Python {platform.python_version()}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the rows")
    parser.add_argument("--quick", action="store_true", help=f"small sizes {QUICK_SIZES} for a smoke run")
    parser.add_argument("--sizes", type=int, nargs="*", help=f"token counts (default {DEFAULT_SIZES})")
    parser.add_argument(
        "--skip", action="append", default=[], choices=["speed", "browser", "quality"],
        help="leave out a part (repeatable): speed/memory cases, Chromium cases, attribution quality",
    )  # fmt: skip
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    report = lambda message: print(f"[bench] {message}", file=sys.stderr, flush=True)  # noqa: E731
    result: dict[str, object] = {"machine": machine(), "rows": []}
    if "speed" not in args.skip:
        rows = run(sizes, progress=report, browser="browser" not in args.skip)
        result["rows"] = [asdict(r) for r in rows]
        print(format_table(rows))
    if "quality" not in args.skip:
        report("attribution quality on rag_demo")
        quality = attribution_quality(MODEL, QUICK_QUALITY_CASES if args.quick else None)
        result["attribution_quality"] = quality
        print("\n" + format_quality(quality))
    args.out.write_text(json.dumps(result, indent=2))
    return 0


def _worker(name: str, tokens: int) -> None:
    measurement = _variant(name, tokens)
    print(json.dumps(asdict(measurement)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(main())
