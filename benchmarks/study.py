"""Citation study speed: questions x passages x orders with the attention method, against the 4-minute target.

The study is built from the shipped quality cases (``benchmarks/data/rag_cases.jsonl``): each
question keeps its own passages and borrows the passages holding the next cases' answers until
it has ``passages``, and its given answer is teacher-forced (no generation), as the target assumes.
Run: ``python -m benchmarks.study [--questions 24 --passages 6 --orders 3]``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

import attnviz
from attnviz.sources.calibration import calibration
from attnviz.sources.study import Study, StudyCase, run_study
from benchmarks.quality import read_cases

MODEL = "smollm2-135m-instruct"
TARGET_SECONDS = 240.0  # 24 questions x 6 passages x 3 orders on 2 CPU cores


def benchmark_study(n_questions: int = 24, n_passages: int = 6) -> Study:
    """A study of ``n_questions`` shipped cases, each over ``n_passages`` passages, with given answers."""
    cases = read_cases()
    if n_questions > len(cases):
        raise ValueError(f"only {len(cases)} shipped cases")
    texts: dict[str, str] = {}
    study_cases = []
    for index, rag in enumerate(cases[:n_questions]):
        ids = [f"c{index}.{k}" for k in range(len(rag.case.passages))]
        texts.update(zip(ids, rag.case.passages, strict=True))
        borrowed = 1
        while len(ids) < n_passages:
            other = (index + borrowed) % len(cases)
            ids.append(f"c{other}.{cases[other].case.gold}")
            texts[ids[-1]] = cases[other].case.passages[cases[other].case.gold]
            borrowed += 1
        study_cases.append(StudyCase(rag.case.question, rag.given_answer, tuple(ids[:n_passages])))
    return Study(tuple(texts.items()), tuple(study_cases))


def time_study(
    model: str = MODEL, n_questions: int = 24, n_passages: int = 6, n_orders: int = 3
) -> dict[str, object]:
    """Seconds for the study (model loaded and heads calibrated beforehand, so neither is counted)."""
    loaded = attnviz.load_model(model)
    heads = calibration(loaded).heads
    study = benchmark_study(n_questions, n_passages)
    started = time.perf_counter()
    result = run_study(loaded, study, n_orders=n_orders, method="attention", heads=heads)
    seconds = time.perf_counter() - started
    return {
        "model": model,
        "questions": n_questions,
        "passages": n_passages,
        "orders": n_orders,
        "runs": len(result.runs),
        "seconds": round(seconds, 2),
        "seconds_per_run": round(seconds / len(result.runs), 3),
        "target_seconds": TARGET_SECONDS if (n_questions, n_passages, n_orders) == (24, 6, 3) else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.study", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--passages", type=int, default=6)
    parser.add_argument("--orders", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(time_study(args.model, args.questions, args.passages, args.orders), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
