"""Attribution quality over a data set of cases: does each method find the passage holding the answer?

Evaluation belongs with the benchmark, not the library: it reads data sets (rag_demo
from the shared data when present, else the cases shipped with the app) and reports
top-1 accuracy and seconds per method.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

import attnviz
from attnviz.agreement import agreement
from attnviz.attribution import METHODS, attribute
from attnviz.calibration import Case, answered, calibration
from attnviz.loading import LoadedModel

# The shared demo cases sit next to the checkout (../shared) or, in a worktree, one level higher.
RAG_CASES = next(
    (
        folder / "shared" / "data" / "rag_demo.jsonl"
        for folder in Path(__file__).resolve().parents[1:4]
        if (folder / "shared" / "data" / "rag_demo.jsonl").exists()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "rag_demo.jsonl",
)


def case_from_dict(row: dict[str, object]) -> Case:
    """A Case from a rag_demo-style record: question, passages, gold (passage index), answer_contains."""
    return Case(str(row["question"]), tuple(row["passages"]), int(row["gold"]), str(row["answer_contains"]))


def read_cases(path: Path) -> list[Case]:
    """Cases from a .jsonl file of rag_demo-style records."""
    return [
        case_from_dict(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def evaluate_rag(loaded: LoadedModel, cases: Sequence[Case | dict[str, object]]) -> dict[str, object]:
    """Top-1 accuracy (passage holding the answer) and mean seconds of each method, on the cases answered correctly.

    ``cases`` are Case objects or rag_demo records (dicts).
    """
    calibrated = calibration(loaded)
    rows = []
    for case in (c if isinstance(c, Case) else case_from_dict(c) for c in cases):
        result = attribute(loaded, case.question, case.passages, method=METHODS)
        rows.append(
            {
                "question": case.question,
                "answer": result.answer,
                "correct": answered(result.answer, case),
                "gold": case.gold,
                **{f"top1_{m}": int(result.ranking(m)[0]) for m in METHODS},
                "spearman_attention_ablation": agreement(
                    result.passage_scores("attention"), result.passage_scores("ablation")
                ).spearman,
                **{f"seconds_{name}": value for name, value in result.seconds.items()},
            }
        )
    correct = [row for row in rows if row["correct"]]
    summary: dict[str, object] = {
        "model": loaded.info.name,
        "cases": len(rows),
        "answered_correctly": len(correct),
        "calibration": calibrated.export(),
    }
    for method in METHODS:
        hits = [row[f"top1_{method}"] == row["gold"] for row in correct]
        summary[f"top1_{method}"] = float(np.mean(hits)) if hits else float("nan")
    for name in ("generate", "attention", "ablation"):
        summary[f"seconds_{name}"] = float(np.mean([row[f"seconds_{name}"] for row in rows])) if rows else 0.0
    summary["rows"] = rows
    return summary


def attribution_quality(model: str, n_cases: int | None = None) -> dict[str, object]:
    """Top-1 accuracy and seconds of naive attention, calibrated attention and ablation on rag_demo.

    Accuracy counts the cases the model answers correctly; the retrieval heads are
    calibrated on synthetic cases (never these), see :mod:`attnviz.calibration`.
    """
    cases = read_cases(RAG_CASES)[:n_cases]
    return evaluate_rag(attnviz.load_model(model), cases)


def format_quality(quality: dict[str, object]) -> str:
    """A Markdown table of attribution quality per method."""
    methods = {"naive": "attention, mean of all heads", "attention": "attention, calibrated heads",
               "ablation": "leave-one-out ablation"}  # fmt: skip
    seconds = {"naive": "attention", "attention": "attention", "ablation": "ablation"}
    lines = [
        f"Attribution on rag_demo: {quality['answered_correctly']} of {quality['cases']} cases answered correctly "
        f"(mean generation {quality['seconds_generate']:.1f} s).",
        "",
        "| method | top-1 = passage holding the answer | seconds per case |",
        "|---|---|---|",
    ]
    for method, label in methods.items():
        lines.append(f"| {label} | {quality[f'top1_{method}']:.0%} | {quality[f'seconds_{seconds[method]}']:.2f} |")
    return "\n".join(lines)
