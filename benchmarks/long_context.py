"""Long contexts on the CPU: a SmolLM2 summary (every head's thumbnail and statistics) vs one SDPA forward.

``python -m benchmarks.long_context --tokens 8192 2048 [--repeats 3]`` measures each size in a fresh
process: both sides are warmed up on a short prompt, then timed in turns ``--repeats`` times (the
machine's speed drifts over minutes; sides timed side by side share the drift) and their medians
compared. Peak resident memory (VmHWM, model included) is read for each run on its own (the peak
mark is reset before it), and the largest is reported.
Targets (issue 14): summary time ≤ 3× SDPA, peak ≤ 4 GB at SmolLM2's full 8,192 tokens. CPU seconds
(all threads) are reported next to wall seconds: on a shared machine they are the steadier ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from benchmarks.memory import peak_mb, reset_peak

MODEL = "smollm2-135m-instruct"
MODES = ("sdpa", "summary")
WARM_UP_TOKENS = 64


def _prompt_ids(loaded, n: int) -> list[int]:  # noqa: ANN001 - LoadedModel
    """``n`` token ids of ordinary English-like text (repeated words), cut to length exactly."""
    words = " ".join(f"word{i % 211} and" for i in range(n))
    return loaded.tokenizer(words)["input_ids"][:n]


def _run(loaded, mode: str, ids: list[int]) -> Callable[[], int]:  # noqa: ANN001 - LoadedModel
    """One ``sdpa`` forward (last logits only) or ``summary`` of ``ids``; returns the tokens it covered."""

    from attnviz.heads.summary import summarise
    from attnviz.tracing.forward import forward
    from attnviz.tracing.inputs import prompt_inputs

    if mode == "summary":
        text = loaded.tokenizer.decode(ids)
        return lambda: summarise(loaded, text).n_tokens
    inputs = prompt_inputs(ids)

    def sdpa() -> int:
        forward(loaded, inputs, None, last_logits_only=True)
        return len(ids)

    return sdpa


def measure(n: int, repeats: int) -> dict[str, object]:
    """Both modes at ``n`` tokens in this process: warmed up, then ``repeats`` rounds in turns."""
    import torch

    import attnviz

    torch.set_num_threads(2)
    loaded = attnviz.load_model(MODEL)
    ids = _prompt_ids(loaded, n)
    for mode in MODES:
        _run(loaded, mode, ids[:WARM_UP_TOKENS])()
    runs = {mode: _run(loaded, mode, ids) for mode in MODES}
    found: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    tokens = 0
    for _ in range(repeats):
        for mode, run in runs.items():
            reset_peak()
            start, cpu_start = time.perf_counter(), time.process_time()
            tokens = run()
            found[mode].append(
                {"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu_start,
                 "peak_gb": peak_mb() * 2**20 / 1e9}
            )  # fmt: skip
    median = lambda mode, key: round(statistics.median(r[key] for r in found[mode]), 2)  # noqa: E731
    return {
        "tokens": tokens,
        "samples": repeats,
        "sdpa_s": median("sdpa", "seconds"),
        "summary_s": median("summary", "seconds"),
        "ratio": round(median("summary", "seconds") / median("sdpa", "seconds"), 2),
        "sdpa_cpu_s": median("sdpa", "cpu_seconds"),
        "summary_cpu_s": median("summary", "cpu_seconds"),
        "cpu_ratio": round(median("summary", "cpu_seconds") / median("sdpa", "cpu_seconds"), 2),
        "summary_peak_gb": round(max(r["peak_gb"] for r in found["summary"]), 2),
        "sdpa_peak_gb": round(max(r["peak_gb"] for r in found["sdpa"]), 2),
        "summary_runs_s": [round(r["seconds"], 2) for r in found["summary"]],
        "sdpa_runs_s": [round(r["seconds"], 2) for r in found["sdpa"]],
        "device": loaded.device_label,
    }


def run(n: int, repeats: int) -> dict[str, object]:
    """Both modes at ``n`` tokens, in a fresh process (so an earlier, larger size leaves no memory behind)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.long_context", "--measure", "--tokens", str(n), "--repeats", str(repeats)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[8192, 2048])
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds of both modes, after a warm-up")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.tokens[0], args.repeats)))
        return
    for n in args.tokens:
        print(json.dumps(run(n, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
