"""Long contexts on the CPU: a SmolLM2 summary (every head's thumbnail and statistics) vs one SDPA forward.

``python -m benchmarks.long_context --tokens 8192 2048`` runs each measurement in a fresh
process, so the peak resident memory (VmHWM) of the summary is its own, model included.
Targets (issue 14): summary time ≤ 3× SDPA, peak ≤ 4 GB at SmolLM2's full 8,192 tokens. CPU seconds
(all threads) are reported next to wall seconds: on a shared machine they are the steadier ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from benchmarks.memory import peak_mb

MODEL = "smollm2-135m-instruct"


def _prompt_ids(loaded, n: int) -> list[int]:  # noqa: ANN001 - LoadedModel
    """``n`` token ids of ordinary English-like text (repeated words), cut to length exactly."""
    words = " ".join(f"word{i % 211} and" for i in range(n))
    return loaded.tokenizer(words)["input_ids"][:n]


def measure(mode: str, n: int) -> dict[str, float | int | str]:
    """One measurement in this process: ``sdpa`` (plain forward) or ``summary``."""
    import torch

    import attnviz
    from attnviz.heads.summary import summarise
    from attnviz.tracing.trace import forward

    torch.set_num_threads(2)
    loaded = attnviz.load_model(MODEL)
    ids = _prompt_ids(loaded, n)
    text = loaded.tokenizer.decode(ids)
    inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    start, cpu_start = time.perf_counter(), time.process_time()
    if mode == "sdpa":
        forward(loaded, inputs, None, last_logits_only=True)
        tokens = len(ids)
    else:
        tokens = summarise(loaded, text).n_tokens
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"mode": mode, "tokens": tokens, "seconds": round(seconds, 2), "cpu_seconds": round(cpu_seconds, 2),
            "peak_bytes": int(peak_mb() * 2**20),
            "device": loaded.device_label}  # fmt: skip


def run(n: int) -> dict[str, object]:
    """SDPA and summary at ``n`` tokens, each in its own process."""
    rows = {}
    for mode in ("sdpa", "summary"):
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks.long_context", "--measure", mode, "--tokens", str(n)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows[mode] = json.loads(done.stdout.strip().splitlines()[-1])
    return {
        "tokens": rows["summary"]["tokens"],
        "sdpa_s": rows["sdpa"]["seconds"],
        "summary_s": rows["summary"]["seconds"],
        "ratio": round(rows["summary"]["seconds"] / rows["sdpa"]["seconds"], 2),
        "sdpa_cpu_s": rows["sdpa"]["cpu_seconds"],
        "summary_cpu_s": rows["summary"]["cpu_seconds"],
        "cpu_ratio": round(rows["summary"]["cpu_seconds"] / rows["sdpa"]["cpu_seconds"], 2),
        "summary_peak_gb": round(rows["summary"]["peak_bytes"] / 1e9, 2),
        "sdpa_peak_gb": round(rows["sdpa"]["peak_bytes"] / 1e9, 2),
        "device": rows["summary"]["device"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[8192, 2048])
    parser.add_argument("--measure", choices=("sdpa", "summary"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.tokens[0])))
        return
    for n in args.tokens:
        print(json.dumps(run(n)), flush=True)


if __name__ == "__main__":
    main()
