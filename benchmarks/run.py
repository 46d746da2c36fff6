"""Speed, memory and payload: the app's own path against what a user would run instead, in one run.

Baselines, measured in the same run at each size: a plain SDPA forward (the floor: attention
is computed once anyway), and eager ``output_attentions=True`` both as a user calls it (all
logits, float32 maps) and like-for-like with our trace (last-position logits, maps stored in
float16). ``trace_full`` is exactly what Explore runs (``trace(..., float16=True)``).
Each (variant, size) runs in a fresh subprocess so peak memory is its own: the process
resets its peak-RSS mark (``/proc/self/clear_refs``) after loading the model and reads
``VmHWM`` after the measured work. The SDPA forward and our traces are then timed again in turns in
one process (``_paired``), and their medians are the times reported: the machine drifts too much
between processes for ratios of separate runs. Eager times are the best of a few runs in their own
process; browser times the median of several.

The module is a little over 400 lines on purpose: every measured variant sits next to its
baseline in one worker (``_variant``), so a reader can check that each ratio compares like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from benchmarks.quality import attribution_quality, format_quality

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = (128, 512, 1024, 2048)
QUICK_SIZES = (32,)
QUICK_QUALITY_CASES = 2
FIRST_VIEW_SIZES = (512, 1024)  # timed FIRST_VIEW_RUNS times each; other sizes once, for their payload
FIRST_VIEW_RUNS = 3
PAIRED = ("sdpa_forward", "trace_full", "trace_layer")  # timed in turns in one process (see _paired)
PAIRED_ROUNDS = {128: 7, 512: 5, 1024: 3}  # rounds of turns; larger sizes 3
BERTVIZ_MAX_TOKENS = 128  # bertviz's own model view of all 270 heads is ~120 MB here already (grows n²)
WARM_UP_TOKENS = 16
PAYLOAD_BUDGET = 2e6  # bytes: the Explore first view's budget
FIRST_PAGE_TARGET = 5.0  # seconds: streamlit run to a traced Explore page
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
    detail: str = ""  # what the figure covers, for the row's note


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


def prompt_text(tokenizer, tokens: int, variant: int = 0) -> str:  # noqa: ANN001 - any tokenizer
    """Text of about ``tokens`` tokens; each ``variant`` starts differently, so no cache can answer it."""
    ids = tokenizer(f"Run {variant}. " + TEXT * (tokens // 20 + 2))["input_ids"][:tokens]
    return tokenizer.decode(ids)


def input_ids(loaded: "LoadedModel", text: str) -> dict:  # noqa: F821
    """The model inputs of ``text``: its token ids as a batch of one."""
    import torch

    return {"input_ids": torch.tensor([loaded.tokenizer(text)["input_ids"]])}


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


def baseline_work(loaded: "LoadedModel", name: str, inputs: dict) -> Callable[[], object]:  # noqa: F821
    """The same weights under transformers' own attention: SDPA forward, or eager with attention maps.

    Warmed up on a short prefix, so the first timed run's peak memory is not hidden by heap
    memory a full-size warm-up left behind.
    """
    import torch
    from transformers import AutoModelForCausalLM

    implementation = "sdpa" if name == "sdpa_forward" else "eager"
    model = AutoModelForCausalLM.from_pretrained(
        loaded.model.name_or_path, attn_implementation=implementation
    )
    model.eval()
    keep = (
        {} if name == "eager_user" else {"logits_to_keep": 1}
    )  # like-for-like: our trace keeps the last row

    def run(given: dict = inputs) -> object:
        with torch.inference_mode():
            outputs = model(**given, use_cache=False, output_attentions=name != "sdpa_forward", **keep)
            if name == "eager_like":  # stored as the trace stores them: float16
                return outputs.logits, tuple(a.half() for a in outputs.attentions)
            return outputs

    run({key: value[:, :WARM_UP_TOKENS] for key, value in inputs.items()})
    return run


def _trace_work(loaded: "LoadedModel", name: str, text: str) -> Callable[[], object]:  # noqa: F821
    """Our trace of ``text``: all maps as Explore traces them, or one layer's; warmed up like the baselines."""
    import attnviz
    from attnviz.tracing.trace import record

    work: dict[str, Callable[[str], object]] = {
        # Exactly what Explore's cached trace runs (ui.cache.prompt_trace).
        "trace_full": lambda given: attnviz.tracing.trace(loaded, given, float16=True),
        "trace_layer": lambda given: record(
            loaded, input_ids(loaded, given), layers=[loaded.n_layers // 2], last_logits_only=True
        ),
    }  # fmt: skip
    work[name](prompt_text(loaded.tokenizer, WARM_UP_TOKENS))
    return lambda: work[name](text)


def _paired(tokens: int) -> dict[str, list[float]]:
    """Seconds of each PAIRED variant, timed in turns round after round in this one process.

    The machine's speed drifts by ±20% over minutes (measured); variants timed side by side share
    the drift, so the ratio of their medians is far steadier than best-of-runs in separate processes.
    """
    import torch

    import attnviz

    torch.set_num_threads(min(2, os.cpu_count() or 2))
    loaded = attnviz.load_model(MODEL)
    text = prompt_text(loaded.tokenizer, tokens)
    inputs = input_ids(loaded, text)
    works = {"sdpa_forward": baseline_work(loaded, "sdpa_forward", inputs)}
    works |= {name: _trace_work(loaded, name, text) for name in PAIRED[1:]}
    times: dict[str, list[float]] = {name: [] for name in PAIRED}
    for _ in range(PAIRED_ROUNDS.get(tokens, 3)):
        for name, work in works.items():
            start = time.perf_counter()
            result = work()
            times[name].append(time.perf_counter() - start)
            del result
    return times


def _variant(name: str, tokens: int) -> Measurement:
    """Run one measured variant in this process (called by the worker subprocess)."""
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 2))
    repeats = 1 if tokens >= 1024 else 2
    if name == "load_gguf":
        from transformers import AutoModelForCausalLM

        from attnviz.models.loading import BUILTINS, SMOLLM2_GGUF

        folder = BUILTINS[MODEL].package_dir()
        return _timed(lambda: AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_GGUF), 1)
    import attnviz

    if name == "load_cached":
        attnviz.load_model(MODEL)  # make sure the conversion exists; the timed load is a cache hit
        return _timed(lambda: attnviz.load_model(MODEL), 2)
    loaded = attnviz.load_model(MODEL)
    text = prompt_text(loaded.tokenizer, tokens)
    inputs = input_ids(loaded, text)
    if name.startswith("attribution_"):
        return _attribution(loaded, name)
    if name in {"bertviz_model_view", "ours_bertviz_view"}:
        return _bertviz_bytes(loaded, name, text)
    if name in {"sdpa_forward", "eager_user", "eager_like"}:
        return _timed(baseline_work(loaded, name, inputs), repeats)
    return _timed(_trace_work(loaded, name, text), repeats)


def _bertviz_bytes(loaded: "LoadedModel", name: str, text: str) -> Measurement:  # noqa: F821
    """Bytes of bertviz's own model view (float32 maps, as its users pass them) or of our default one."""
    import attnviz
    from attnviz.views.bertviz import default_selection, fit
    from benchmarks.payload import bertviz_model_view_bytes

    if name == "bertviz_model_view":
        return Measurement(
            0.0, None, float(bertviz_model_view_bytes(attnviz.tracing.trace(loaded, text))), "all heads"
        )
    traced = attnviz.tracing.trace(loaded, text, float16=True)
    subset = fit(traced, "model", default_selection(traced, "model")).subset
    covered = (
        "all heads"
        if subset.complete
        else f"{len(subset.selection.layers)} layers × {len(subset.selection.heads)} heads"
    )
    return Measurement(0.0, None, float(subset.n_bytes), covered)


def _attribution(loaded: "LoadedModel", name: str) -> Measurement:  # noqa: F821 - lazy import
    """Attention attribution (one pass) or leave-one-out ablation of the same answer over 8 passages."""
    from attnviz.sources.ablation import ablate_sources
    from attnviz.sources.attention import answer_logprobs, passage_attention
    from attnviz.sources.attribution import generate_answer
    from attnviz.sources.passages import build_prompt
    from benchmarks.quality import read_cases

    first, second = (rag.case for rag in read_cases()[:2])
    question = first.question
    passages = first.passages + second.passages  # 8 passages, the answer in one
    prompt = build_prompt(loaded, question, passages)
    answer = generate_answer(loaded, prompt.ids, max_new_tokens=24)  # generation is not timed
    if name == "attribution_attention":
        passage_attention(loaded, prompt, answer)  # warm-up
        return _timed(lambda: passage_attention(loaded, prompt, answer), 2)
    base = answer_logprobs(loaded, prompt.ids, answer)
    return _timed(lambda: ablate_sources(loaded, prompt, answer, base), 1)


def _run_worker(name: str, tokens: int, module: str = "benchmarks.run") -> dict:
    """Run a worker (a variant, or ``paired``) of ``module`` in a fresh subprocess so its peak memory is its own; its JSON."""
    command = [sys.executable, "-m", module, "--worker", name, str(tokens)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"benchmark worker {name} {tokens} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _run_variant(name: str, tokens: int) -> Measurement:
    """Measure a variant in a fresh subprocess so its peak memory is its own."""
    return Measurement(**_run_worker(name, tokens))


def _row(
    case: str, tokens: int, mine: Measurement, theirs: Measurement, note: str = "", unit: str = "B"
) -> Row:
    """Compare two measurements: by ``value`` when both have one (``unit``: bytes unless told), else by time."""
    by_value = mine.value is not None and theirs.value is not None
    ours, baseline = (mine.value, theirs.value) if by_value else (mine.seconds, theirs.seconds)
    return Row(
        case=case,
        tokens=tokens,
        ours=round(ours, 4),
        baseline=round(baseline, 4),
        ratio=round(ours / baseline, 4) if baseline else float("inf"),
        unit=unit if by_value else "s",
        ours_peak_mb=None if mine.peak_mb is None else round(mine.peak_mb, 1),
        baseline_peak_mb=None if theirs.peak_mb is None else round(theirs.peak_mb, 1),
        note=note,
    )


def _first_views(sizes: Sequence[int], quick: bool) -> dict[str, object]:
    """Run :mod:`benchmarks.first_view` on fresh prompts of each size; its JSON result."""
    from transformers import AutoTokenizer

    from attnviz.models.loading import builtin_folder

    tokenizer = AutoTokenizer.from_pretrained(builtin_folder(MODEL))
    runs = lambda tokens: FIRST_VIEW_RUNS if tokens in FIRST_VIEW_SIZES and not quick else 1  # noqa: E731
    prompts = [(t, prompt_text(tokenizer, t, variant)) for t in sizes for variant in range(1, runs(t) + 1)]
    path = Path(tempfile.mkstemp(suffix=".json")[1])
    path.write_text(json.dumps(prompts))
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.first_view", str(path)],
        capture_output=True, text=True, check=False, timeout=3600, cwd=ROOT,
    )  # fmt: skip
    path.unlink()
    if result.returncode != 0:
        raise RuntimeError(f"first_view failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _browser_rows(sizes: Sequence[int], progress: Callable[[str], None], quick: bool) -> list[Row]:
    """first_view (median, vs an SDPA forward of each prompt), Explore payload, bertviz payload, time_to_first_page."""
    rows: list[Row] = []
    progress(f"first_view @ {list(sizes)} and time_to_first_page (browser)")
    measured = _first_views(sizes, quick)
    for tokens in sizes:
        views = [v for v in measured["first_views"] if v["tokens"] == tokens]
        seconds = statistics.median(v["seconds"] for v in views)
        n_bytes = statistics.median(v["bytes"] for v in views)
        forward = Measurement(statistics.median(v["forward"] for v in views), None)
        rows.append(
            _row(
                "first_view", tokens, Measurement(seconds, None), forward,
                f"prompt typed to head grid drawn in Chromium vs an SDPA forward of it right after (medians of {len(views)})",
            )
        )  # fmt: skip
        budget = Measurement(0.0, None, PAYLOAD_BUDGET)
        rows.append(
            _row(
                "payload_explore",
                tokens,
                Measurement(0.0, None, n_bytes),
                budget,
                "Explore first view's websocket bytes vs the 2 MB budget",
            )
        )
        if tokens <= BERTVIZ_MAX_TOKENS:
            progress(f"payload_bertviz @ {tokens}")
            ours, theirs = (
                _run_variant("ours_bertviz_view", tokens),
                _run_variant("bertviz_model_view", tokens),
            )
            note = f"our bertviz model view ({ours.detail}) vs bertviz's own model_view ({theirs.detail}), same trace"
            rows.append(_row("payload_bertviz", tokens, ours, theirs, note))
    target = Measurement(FIRST_PAGE_TARGET, None)
    for case, note in (
        ("time_to_first_page", "streamlit run to Explore's traced prompt drawn vs the 5 s target"),
        ("first_page_started", "the same, Explore opened once the server has started (model preloaded), vs 5 s"),
    ):
        rows.append(_row(case, 0, Measurement(float(measured[case]), None), target, note))
    return rows


def _speed_rows(tokens: int, progress: Callable[[str], None]) -> list[Row]:
    """trace_full against its three baselines, its memory, and trace_layer, at one size."""
    measured: dict[str, Measurement] = {}
    for name in ("sdpa_forward", "eager_user", "eager_like", "trace_full", "trace_layer"):
        progress(f"{name} @ {tokens}")
        measured[name] = _run_variant(name, tokens)
    progress(f"{', '.join(PAIRED)} in turns @ {tokens}")
    for name, seconds in _run_worker("paired", tokens).items():  # their times: medians taken side by side
        measured[name] = replace(measured[name], seconds=statistics.median(seconds))
    full, sdpa, like = measured["trace_full"], measured["sdpa_forward"], measured["eager_like"]
    memory = lambda m: Measurement(0.0, m.peak_mb, m.peak_mb)  # noqa: E731
    rows = [
        _row("trace_full", tokens, full, like, "Explore's trace (fp16 maps, last logits) vs eager output_attentions, same logits and fp16 maps"),
        _row("trace_full_user", tokens, full, measured["eager_user"], "the same vs eager output_attentions as a user calls it (all logits, fp32 maps)"),
        _row("trace_full_sdpa", tokens, full, sdpa, "the same vs one SDPA forward without maps (the floor)"),
        _row("trace_full_memory", tokens, memory(full), memory(like), "peak memory (MB) vs like-for-like eager", unit="MB"),
        _row("trace_layer", tokens, measured["trace_layer"], sdpa, "one layer's maps vs SDPA forward, same logits"),
    ]  # fmt: skip
    return rows


def run(
    sizes: Sequence[int], progress: Callable[[str], None] = print, browser: bool = True, quick: bool = False
) -> list[Row]:
    """All speed, memory and payload cases at ``sizes``; each row's baseline is measured in this same run."""
    rows: list[Row] = []
    for tokens in sizes:
        rows.extend(_speed_rows(tokens, progress))
    from benchmarks import lazy_heads  # imports this module: loaded late

    rows.extend(lazy_heads.rows(sizes, progress, quick))
    progress("attribution_attention")
    rows.append(
        _row(
            "attribution_attention", 0, _run_variant("attribution_attention", 0), _run_variant("attribution_ablation", 0),
            "8 passages, same answer: one traced pass vs leave-one-out (9 passes)",
        )
    )  # fmt: skip
    progress("model_load_cached")
    rows.append(
        _row(
            "model_load_cached",
            0,
            _run_variant("load_cached", 0),
            _run_variant("load_gguf", 0),
            "safetensors cache vs GGUF",
        )
    )
    if browser:
        rows.extend(_browser_rows(sizes, progress, quick))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """A Markdown table of the rows (also what the README shows)."""
    header = "| case | tokens | ours | baseline | ratio | ours peak MB | baseline peak MB | note |"
    lines = [header, "|" + "---|" * 8]
    for r in rows:
        peak = lambda v: "" if v is None else f"{v:,.0f}"  # noqa: E731
        amount = {"B": lambda v: f"{v / 1e6:.2f} MB", "MB": lambda v: f"{v:,.0f} MB"}.get(
            r.unit, lambda v: f"{v:.3g} s"
        )
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
        rows = run(sizes, progress=report, browser="browser" not in args.skip, quick=args.quick)
        result["rows"] = [asdict(r) for r in rows]
        print(format_table(rows))
    if "quality" not in args.skip:
        report("attribution quality on the shipped cases")
        quality = attribution_quality(MODEL, QUICK_QUALITY_CASES if args.quick else None)
        result["attribution_quality"] = quality
        print("\n" + format_quality(quality))
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(format_report(result))
    return 0


def format_report(result: dict[str, object]) -> str:
    """The Markdown written next to the JSON: machine line, speed table, quality table."""
    parts = [f"Machine: {result['machine']}; run on {time.strftime('%Y-%m-%d')}."]
    if result["rows"]:
        parts.append(format_table([Row(**row) for row in result["rows"]]))
    if "attribution_quality" in result:
        parts.append(format_quality(result["attribution_quality"]))
    return "\n\n".join(parts) + "\n"


def _worker(name: str, tokens: int) -> None:
    result = _paired(tokens) if name == "paired" else asdict(_variant(name, tokens))
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        _worker(sys.argv[2], int(sys.argv[3]))
    else:
        raise SystemExit(main())
