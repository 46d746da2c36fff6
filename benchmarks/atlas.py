"""Head atlas time and peak memory against plain forward passes over the same prompts (issue 26):
``python -m benchmarks.atlas [--models M ...] [--prompts 200] [--out benchmarks/atlas_latest.json]``.

Each model runs in a fresh process that loads it, then times, one after the other: one plain SDPA
forward of each corpus prompt (last-position logits, no hooks) and the atlas over the same prompts
(:func:`attnviz.heads.atlas.build_atlas`: statistics, roles and the ablation checks; it never reads the
atlas cache). ``atlas`` rows compare the two, so the ratio says how many plain passes over the corpus
the atlas costs; ``atlas_budget`` rows compare the atlas with the issue's budget for that model (MiniLM
2 minutes, SmolLM2-135M 10 minutes on 2 cores, stated for the default corpus of about 200 passages, of 305 that ship).
Peak memory is each side's VmHWM above the resident set before it (the model loaded). Wall seconds vary
with the machine's load: the report's machine line carries the load average at the start and the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from benchmarks.report import Row, format_report, format_table, format_verdicts
from benchmarks.run import Measurement, _row, _timed, machine

MODELS = ("minilm-l6", "smollm2-135m-instruct")
BUDGET_SECONDS = {"minilm-l6": 120.0, "smollm2-135m-instruct": 600.0}  # the targets on 2 cores
DEFAULT_PROMPTS = 200


def measure(model: str, prompts: int) -> dict[str, object]:
    """In this process: plain SDPA forwards of the atlas's prompts, then the atlas (retrieval heads when cached)."""
    import torch

    import attnviz
    from attnviz.heads.atlas import build_atlas
    from attnviz.heads.corpus import corpus_prompts, shipped_corpus
    from attnviz.sources.calibration import atlas_retrieval
    from attnviz.tracing.forward import forward
    from attnviz.tracing.inputs import prompt_inputs

    torch.set_num_threads(min(2, os.cpu_count() or 2))
    loaded = attnviz.load_model(model)
    corpus = shipped_corpus()
    retrieval = atlas_retrieval(loaded) if loaded.info.has_chat_template else None
    chosen = corpus_prompts(loaded, corpus, prompts)
    forward(loaded, prompt_inputs(chosen[0].ids[:16]), None, last_logits_only=True)  # warm-up

    def forwards() -> None:
        for prompt in chosen:
            forward(loaded, prompt_inputs(prompt.ids), None, last_logits_only=True)

    forward_seconds, forward_peak = _timed(forwards)
    found: list[object] = []
    atlas_seconds, atlas_peak = _timed(
        lambda: found.append(build_atlas(loaded, corpus, prompts=prompts, retrieval=retrieval))
    )
    natural = sum(p.kind == "natural" for p in chosen)
    return {
        "model": model, "prompts": len(chosen), "natural": natural, "tokens": sum(len(p.ids) for p in chosen),
        "atlas_seconds": atlas_seconds, "atlas_peak_mb": atlas_peak, "forward_seconds": forward_seconds,
        "forward_peak_mb": forward_peak, "uncalibrated": loaded.info.has_chat_template and retrieval is None,
        "roles": {name: len(heads) for name, heads in found[0].roles.items()},
    }  # fmt: skip


def _fresh(model: str, prompts: int) -> dict[str, object]:
    """:func:`measure` in a fresh process (its peak memory is the atlas's own)."""
    command = [sys.executable, "-m", "benchmarks.atlas", "--worker", "--models", model, "--prompts", str(prompts)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise RuntimeError(f"atlas benchmark of {model} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def rows_of(measured: dict[str, object]) -> list[Row]:
    """The ``atlas`` row (vs plain forwards) and, for a model with a stated budget, the ``atlas_budget`` row."""
    model, seconds, tokens = str(measured["model"]), float(measured["atlas_seconds"]), int(measured["tokens"])
    what = (
        f"{model}: {measured['prompts']} prompts ({measured['natural']} passages + generated) and the ablation "
        f"checks{' (no retrieval calibration cached)' if measured['uncalibrated'] else ''}"
    )
    atlas = Measurement(seconds, float(measured["atlas_peak_mb"]))
    forwards = Measurement(float(measured["forward_seconds"]), float(measured["forward_peak_mb"]))
    rows = [_row("atlas", tokens, atlas, forwards, f"{what} vs one plain SDPA forward of each prompt")]
    budget = BUDGET_SECONDS.get(model)
    if budget is not None:
        stated = f"{what} vs the issue's {budget:g} s on 2 cores (stated for about {DEFAULT_PROMPTS} passages)"
        rows.append(_row("atlas_budget", tokens, atlas, Measurement(budget, None, samples=None), stated))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument(
        "--prompts", type=int, default=DEFAULT_PROMPTS, help="natural passages (generated sequences are added)"
    )
    parser.add_argument("--out", type=Path, help="JSON file for the rows (and the Markdown next to it)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.models[0], args.prompts)))
        return 0
    load = os.getloadavg()[0]
    measured = [_fresh(model, args.prompts) for model in args.models]
    rows = [row for found in measured for row in rows_of(found)]
    result = {
        "machine": f"{machine()}, load average {load:.2f} at the start and {os.getloadavg()[0]:.2f} at the end",
        "rows": [asdict(r) for r in rows],
        "measured": measured,
    }
    print(format_table(rows) + "\n\n" + format_verdicts(rows))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))
        args.out.with_suffix(".md").write_text(format_report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
