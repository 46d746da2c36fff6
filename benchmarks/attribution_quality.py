"""Attribution quality on rag_demo: top-1 accuracy and time of naive attention, calibrated attention and ablation.

Run: ``python benchmarks/attribution_quality.py [--cases ../shared/data/rag_demo.jsonl] [--out result.json]``.
Accuracy counts only cases whose generated answer contains ``answer_contains``; the
retrieval heads come from :func:`attnviz.attribution.calibration` (synthetic cases, never these).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from attnviz.attribution import evaluate_rag, read_cases
from attnviz.loading import DEFAULT_MODEL, load_model

DEFAULT_CASES = Path(__file__).resolve().parents[2] / "shared" / "data" / "rag_demo.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        type=Path,
        default=DEFAULT_CASES,
        help="jsonl with question, passages, gold, answer_contains",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="built-in name, local folder or hub id")
    parser.add_argument(
        "--out", type=Path, default=None, help="also write the full result (with per-case rows) here"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    summary = evaluate_rag(load_model(args.model), read_cases(args.cases))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    print(json.dumps({key: value for key, value in summary.items() if key != "rows"}, indent=2))
    for row in summary["rows"]:
        mark = "ok " if row["correct"] else "-- "
        tops = " ".join(f"{m}={row[f'top1_{m}']}" for m in ("naive", "attention", "ablation"))
        print(f"{mark} gold={row['gold']} {tops}  {row['answer']!r}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
