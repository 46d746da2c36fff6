"""Head atlas time and peak memory: ``python -m benchmarks.atlas --model minilm-l6 --prompts 24``.

Each measurement runs in a fresh process, so its peak resident memory (VmHWM) is its own, model
included; :func:`attnviz.heads.atlas.build_atlas` never reads the atlas cache. Targets (issue 26):
MiniLM ≤ 2 minutes and SmolLM2-135M ≤ 10 minutes on 2 cores with the default corpus (200 passages,
of 305 that ship) plus the ablation checks. Wall seconds vary with the machine's load: report
``uptime``'s load average next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from benchmarks.long_context import peak_memory_bytes


def measure(model: str, prompts: int) -> dict[str, object]:
    """One atlas in this process (shipped corpus, retrieval heads when cached): seconds, CPU seconds, peak bytes."""
    import torch

    import attnviz
    from attnviz.heads.atlas import build_atlas
    from attnviz.heads.corpus import shipped_corpus
    from attnviz.sources.calibration import atlas_retrieval

    torch.set_num_threads(2)
    loaded = attnviz.load_model(model)
    retrieval = atlas_retrieval(loaded) if loaded.info.has_chat_template else None
    start, cpu_start = time.perf_counter(), time.process_time()
    result = build_atlas(loaded, shipped_corpus(), prompts=prompts, retrieval=retrieval)
    return {
        "model": model, "prompts": len(result.prompts), "tokens": result.n_tokens,
        "seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "peak_bytes": peak_memory_bytes(), "load_average": os.getloadavg()[0],
        "roles": {name: len(heads) for name, heads in result.roles.items()},
    }  # fmt: skip


def run(model: str, prompts: int) -> dict[str, object]:
    """:func:`measure` in a fresh process (its peak memory is the atlas's own)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.atlas", "--worker", "--model", model, "--prompts", str(prompts)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--prompts", type=int, default=24, help="natural passages (generated sequences are added)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    row = measure(args.model, args.prompts) if args.worker else run(args.model, args.prompts)
    print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
