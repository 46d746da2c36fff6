"""Citation study speed: questions x passages x orders with the attention method, against the 4-minute target.

The study is built from the shipped quality cases (``benchmarks/data/rag_cases.jsonl``): each
question keeps its own passages and borrows the passages holding the next cases' answers until
it has ``passages``, and its given answer is teacher-forced (no generation), as the target assumes.
Two rows, both sides timed in this one process after a warm-up: ``study_attention`` against the
240 s target (stated for 24 x 6 x 3 on 2 cores), and ``study_attention_sdpa`` against the floor,
one plain SDPA forward (no attention kept, not batched) of every question in every order.
Run: ``python -m benchmarks.study [--questions 24 --passages 6 --orders 3] [--out benchmarks/study_latest.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

import attnviz
from attnviz.sources.attention import answer_logprobs
from attnviz.sources.attribution import tokenize_answer
from attnviz.sources.calibration import calibration
from attnviz.sources.passages import build_prompt
from attnviz.sources.study import Study, StudyCase, run_study
from benchmarks.quality import read_cases
from benchmarks.report import Row, format_report, format_table
from benchmarks.run import MODEL, Measurement, _row, machine

TARGET_SECONDS = 240.0  # 24 questions x 6 passages x 3 orders on 2 CPU cores (issue 27)
TARGET_SIZE = (24, 6, 3)


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
    """The study's seconds against the target and against plain SDPA forwards of the same prompts and answers.

    The model is loaded and its heads calibrated beforehand, and one question runs once as a warm-up, so
    none of that is counted.
    """
    torch.set_num_threads(min(2, os.cpu_count() or 2))
    loaded = attnviz.load_model(model)
    heads = calibration(loaded).heads
    study = benchmark_study(n_questions, n_passages)
    run_study(loaded, Study(study.passages, study.cases[:1]), n_orders=1, heads=heads)  # warm-up
    started = time.perf_counter()
    result = run_study(loaded, study, n_orders=n_orders, method="attention", heads=heads)
    seconds = time.perf_counter() - started
    scored = [
        (
            build_prompt(
                loaded, study.cases[run.question].question, [study.text(i) for i in run.passage_ids]
            ).ids,
            tokenize_answer(loaded, run.answer),
        )
        for run in result.runs
    ]
    started = time.perf_counter()
    for prompt_ids, answer_ids in scored:
        answer_logprobs(loaded, prompt_ids, answer_ids)  # one plain SDPA forward, no hooks
    sdpa = time.perf_counter() - started
    size = (n_questions, n_passages, n_orders)
    setting = f"{n_questions} questions × {n_passages} passages × {n_orders} orders, given answers"
    stated = "" if size == TARGET_SIZE else " (stated for 24 × 6 × 3)"
    ours = Measurement(seconds, None)
    rows: list[Row] = [
        _row("study_attention", 0, ours, Measurement(TARGET_SECONDS, None, samples=None),
             f"{setting} vs the 240 s target{stated}"),
        _row("study_attention_sdpa", 0, ours, Measurement(sdpa, None),
             f"the same study vs one plain SDPA forward per question and order ({len(scored)}, not batched)"),
    ]  # fmt: skip
    mean_tokens = sum(len(ids) + len(answer) for ids, answer in scored) / len(scored)
    return {
        "machine": machine(),
        "rows": [asdict(row) for row in rows],
        "study": {
            "model": model, "questions": n_questions, "passages": n_passages, "orders": n_orders,
            "runs": len(result.runs), "mean_tokens": round(mean_tokens), "seconds_per_run": round(seconds / len(result.runs), 3),
        },
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.study", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--passages", type=int, default=6)
    parser.add_argument("--orders", type=int, default=3)
    parser.add_argument("--out", type=Path, help="JSON file for the rows (and the report beside it, .md)")
    args = parser.parse_args(argv)
    result = time_study(args.model, args.questions, args.passages, args.orders)
    print(json.dumps(result["study"]) + "\n\n" + format_table([Row(**row) for row in result["rows"]]))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2))
        args.out.with_suffix(".md").write_text(format_report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
