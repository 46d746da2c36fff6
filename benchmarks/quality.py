"""Attribution quality over a data set of cases: does each method find the passage holding the answer?

Evaluation belongs with the benchmark, not the library: it reads the cases shipped in
``benchmarks/data/rag_cases.jsonl`` (written for this project) and reports top-1 accuracy
with its n (hits/cases) and seconds per method, twice: over the cases the model answers
correctly itself, and over every case with its given answer teacher-forced.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import attnviz
from attnviz.models.loading import LoadedModel
from attnviz.sources.agreement import agreement
from attnviz.sources.attribution import METHODS, attribute
from attnviz.sources.calibration import Case, answered, calibration

RAG_CASES = Path(__file__).resolve().parent / "data" / "rag_cases.jsonl"


@dataclass(frozen=True)
class RagCase:
    """A benchmark case and the answer teacher-forced when every case is scored (not only those answered)."""

    case: Case
    given_answer: str


def case_from_dict(row: dict[str, object]) -> RagCase:
    """A RagCase from a record: question, passages, gold (passage index), answer_contains, answer."""
    case = Case(str(row["question"]), tuple(row["passages"]), int(row["gold"]), str(row["answer_contains"]))
    return RagCase(case, str(row["answer"]))


def read_cases(path: Path = RAG_CASES) -> list[RagCase]:
    """Cases from a .jsonl file of records as in ``benchmarks/data/rag_cases.jsonl``."""
    return [
        case_from_dict(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def _case_row(loaded: LoadedModel, case: Case, answer: str | None) -> dict[str, object]:
    """Attribute one case by every method (the model's own answer when ``answer`` is None); its top-1 per method."""
    result = attribute(loaded, case.question, case.passages, method=METHODS, answer=answer)
    return {
        "question": case.question,
        "answer": result.answer,
        "given": answer is not None,
        "correct": answered(result.answer, case),
        "gold": case.gold,
        **{f"top1_{m}": int(result.ranking(m)[0]) for m in METHODS},
        "spearman_attention_ablation": agreement(
            result.passage_scores("attention"), result.passage_scores("ablation")
        ).spearman,
        **{f"seconds_{name}": value for name, value in result.seconds.items()},
    }


def _hits(rows: Sequence[dict[str, object]]) -> dict[str, object]:
    """Top-1 hits per method over ``rows``, with n: the fraction alone would hide 5/5 behind "100%"."""
    hits = {m: sum(row[f"top1_{m}"] == row["gold"] for row in rows) for m in METHODS}
    return {"n": len(rows), "hits": hits, "top1": {m: hits[m] / len(rows) if rows else float("nan") for m in METHODS}}


def evaluate_rag(loaded: LoadedModel, cases: Sequence[RagCase]) -> dict[str, object]:
    """Top-1 accuracy (passage holding the answer) and mean seconds of each method.

    ``answered`` scores the cases whose generated answer contains the expected text; ``given``
    scores every case with its given answer teacher-forced, so no case is left out.
    """
    calibrated = calibration(loaded)
    own = [_case_row(loaded, rag.case, None) for rag in cases]
    given = [_case_row(loaded, rag.case, rag.given_answer) for rag in cases]
    correct = [row for row in own if row["correct"]]
    summary: dict[str, object] = {
        "model": loaded.info.name,
        "cases": len(own),
        "answered_correctly": len(correct),
        "calibration": calibrated.export(),
        "answered": _hits(correct),
        "given": _hits(given),
    }
    for name in ("generate", "attention", "ablation"):
        summary[f"seconds_{name}"] = float(np.mean([row[f"seconds_{name}"] for row in own])) if own else 0.0
    summary["rows"] = own + given
    return summary


def attribution_quality(model: str, n_cases: int | None = None) -> dict[str, object]:
    """Top-1 accuracy and seconds of naive attention, calibrated attention and ablation on the shipped cases.

    The retrieval heads are calibrated on synthetic cases (never these), see :mod:`attnviz.sources.calibration`.
    """
    return evaluate_rag(attnviz.load_model(model), read_cases()[:n_cases])


def format_quality(quality: dict[str, object]) -> str:
    """A Markdown table of attribution quality per method, hits out of n for both sets of cases."""
    methods = {"naive": "attention, mean of all heads", "attention": "attention, calibrated heads",
               "ablation": "leave-one-out ablation"}  # fmt: skip
    seconds = {"naive": "attention", "attention": "attention", "ablation": "ablation"}
    own, given = quality["answered"], quality["given"]
    lines = [
        f"Attribution on the {quality['cases']} shipped cases (benchmarks/data/rag_cases.jsonl): "
        f"{quality['answered_correctly']} answered correctly by the model (mean generation "
        f"{quality['seconds_generate']:.1f} s); every case also scored with its given answer.",
        "",
        "| method | top-1 = gold, answered cases | top-1 = gold, all cases (given answer) | seconds per case |",
        "|---|---|---|---|",
    ]
    for method, label in methods.items():
        lines.append(
            f"| {label} | {own['hits'][method]}/{own['n']} | {given['hits'][method]}/{given['n']} "
            f"| {quality[f'seconds_{seconds[method]}']:.2f} |"
        )
    return "\n".join(lines)
