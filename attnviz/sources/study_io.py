"""Citation study in and out: cases and passages from .jsonl/.csv or typed lines; results as JSON and CSV rows.

Cases: one record per question with ``question``, optionally ``answer`` (teacher-forced),
``passage_ids`` (ids from the passages file; a .csv separates them with ``|``) or ``passages``
(texts of this question's own passages). A case with neither uses every shared passage.
Passages: records with ``id`` and ``text``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path, PurePath

from attnviz.sources.passages import MAX_PASSAGES, PassageError
from attnviz.sources.study import MEASURES, Comparison, Study, StudyCase, StudyResult

DEMO_DIR = Path(__file__).resolve().parent / "study_demo"
DEMO_REWRITE = "festival"  # the demo's A/B: this passage, rewritten in DEMO_DIR / "festival_rewrite.txt"
MAX_STUDY_QUESTIONS = 200
STUDY_SUFFIXES = (".jsonl", ".csv")
ANSWER_SEPARATOR = " | "  # typed questions: "question | answer"


def _records(name: str, text: str) -> list[dict[str, object]]:
    """Records of a .jsonl (one JSON object per line) or .csv (header row) file's text."""
    suffix = PurePath(name).suffix.lower()
    if suffix == ".csv":
        return [dict(row) for row in csv.DictReader(io.StringIO(text))]
    if suffix != ".jsonl":
        raise PassageError(f"'{name}' is not a .jsonl or .csv file.")
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise PassageError(f"'{name}' line {number} is not JSON: {error.msg}.") from None
        if not isinstance(record, dict):
            raise PassageError(f"'{name}' line {number} is not a JSON object.")
        records.append(record)
    return records


def _text(record: dict[str, object], key: str, where: str, required: bool = True) -> str | None:
    value = record.get(key)
    if value is None or value == "":
        if required:
            raise PassageError(f"{where}: '{key}' is missing.")
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise PassageError(f"{where}: '{key}' must be non-empty text.")
    return value.strip()


def parse_passages(name: str, text: str) -> tuple[tuple[str, str], ...]:
    """(id, text) pairs from a passages file's text; ids must be unique."""
    pairs = []
    for number, record in enumerate(_records(name, text), start=1):
        where = f"'{name}' record {number}"
        pairs.append((_text(record, "id", where), _text(record, "text", where)))
    ids = [i for i, _ in pairs]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate is not None:
        raise PassageError(f"'{name}': the passage id {duplicate!r} is used twice.")
    return tuple(pairs)  # type: ignore[arg-type]


def _case_passages(record: dict[str, object], number: int, where: str, shared: dict[str, str]):
    """(passage ids, this case's own (id, text) passages) of one case record."""
    ids, texts = record.get("passage_ids"), record.get("passages")
    if isinstance(ids, str):
        ids = [part.strip() for part in ids.split("|") if part.strip()]
    if texts:
        if not isinstance(texts, list) or not all(isinstance(t, str) and t.strip() for t in texts):
            raise PassageError(f"{where}: 'passages' must be a list of non-empty texts.")
        own = tuple((f"q{number}.{k}", t.strip()) for k, t in enumerate(texts, start=1))
        return tuple(i for i, _ in own), own
    if ids:
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise PassageError(f"{where}: 'passage_ids' must be a list of passage ids.")
        unknown = [i for i in ids if i not in shared]
        if unknown:
            raise PassageError(f"{where}: no passage has the id {unknown[0]!r}.")
        return tuple(ids), ()
    if not shared:
        raise PassageError(f"{where}: give 'passages' or 'passage_ids', or a passages file.")
    return tuple(shared), ()


def parse_study(name: str, text: str, passages: tuple[tuple[str, str], ...] = ()) -> Study:
    """A Study from a cases file's text over the shared ``passages`` (see the module docstring for fields)."""
    shared = dict(passages)
    cases, own_passages = [], []
    for number, record in enumerate(_records(name, text), start=1):
        where = f"'{name}' record {number}"
        ids, own = _case_passages(record, number, where, shared)
        if len(ids) > MAX_PASSAGES:
            raise PassageError(f"{where}: {len(ids)} passages; at most {MAX_PASSAGES} per question.")
        own_passages += own
        cases.append(StudyCase(_text(record, "question", where), _text(record, "answer", where, False), ids))
    return _study(tuple(passages) + tuple(own_passages), cases)


def _study(passages: tuple[tuple[str, str], ...], cases: list[StudyCase]) -> Study:
    if not cases:
        raise PassageError("Give at least one question.")
    if len(cases) > MAX_STUDY_QUESTIONS:
        raise PassageError(f"{len(cases)} questions; a study takes at most {MAX_STUDY_QUESTIONS}.")
    return Study(passages, tuple(cases))


def read_study(cases: Path, passages: Path | None = None) -> Study:
    """A Study from a cases file and an optional passages file (.jsonl or .csv, UTF-8)."""
    try:
        shared = (
            () if passages is None else parse_passages(passages.name, passages.read_text(encoding="utf-8"))
        )
        return parse_study(cases.name, cases.read_text(encoding="utf-8"), shared)
    except (OSError, UnicodeDecodeError) as error:
        raise PassageError(f"Could not read the study: {error}") from None


def demo_study() -> Study:
    """The demo study shipped with attnviz (see ``study_demo/README.md``)."""
    return read_study(DEMO_DIR / "cases.jsonl", DEMO_DIR / "passages.jsonl")


def demo_rewrite() -> tuple[str, str]:
    """(passage id, rewritten text) of the demo's A/B comparison."""
    return DEMO_REWRITE, (DEMO_DIR / f"{DEMO_REWRITE}_rewrite.txt").read_text(encoding="utf-8").strip()


def typed_study(passage_lines: str, question_lines: str) -> Study:
    """A Study from passages typed one per line (ids P1, P2, …) and questions one per line, each
    optionally followed by `` | `` and its given answer."""
    texts = [line.strip() for line in passage_lines.splitlines() if line.strip()]
    if not texts:
        raise PassageError("Give at least one passage (one per line).")
    if len(texts) > MAX_PASSAGES:
        raise PassageError(f"{len(texts)} passages; at most {MAX_PASSAGES} per question.")
    passages = tuple((f"P{k}", text) for k, text in enumerate(texts, start=1))
    cases = []
    for line in question_lines.splitlines():
        if not line.strip():
            continue
        question, _, answer = line.partition(ANSWER_SEPARATOR)
        cases.append(StudyCase(question.strip(), answer.strip() or None, tuple(i for i, _ in passages)))
    return _study(passages, cases)


def export_rows(result: StudyResult) -> list[dict[str, object]]:
    """Every (question, order, passage) row with the question, answer and passage text, for CSV export."""
    cases = result.study.cases
    return [
        {
            "question_index": run.question,
            "question": cases[run.question].question,
            "order": run.order,
            "passage": row.passage,
            "position": row.position,
            "share": round(row.share, 6),
            "top1": row.top1,
            "answer": run.answer,
            "answer_origin": run.answer_origin,
            "answer_logprob": round(run.logprob, 6),
        }
        for run in result.runs
        for row in run.rows()
    ]


def _interval(interval) -> dict[str, float]:
    return {
        "mean": round(interval.mean, 6),
        "low": round(interval.low, 6),
        "high": round(interval.high, 6),
        "n": interval.n,
    }


def export_json(result: StudyResult, comparison: Comparison | None = None) -> dict[str, object]:
    """The study as JSON data: ``passages``, ``positions``, ``rows`` and, after an A/B rewrite, ``variant``."""
    return {
        "method": result.method,
        "measure": MEASURES[result.method],
        "orders": result.n_orders,
        "order_kind": result.order_kind,
        "seed": result.seed,
        "questions": len(result.study.cases),
        "complete": result.complete,
        "seconds": round(result.seconds, 3),
        "passages": [
            {
                "id": s.passage,
                "mean_share": round(s.share.mean, 6),
                "low": round(s.share.low, 6),
                "high": round(s.share.high, 6),
                "top1_rate": round(s.top1_rate, 6),
                "questions": s.share.n,
                "leads": list(s.leads),
            }
            for s in result.passages
        ],
        "positions": [
            {
                "position": p.position,
                "mean_share": round(p.share.mean, 6),
                "low": round(p.share.low, 6),
                "high": round(p.share.high, 6),
                "questions": p.share.n,
            }
            for p in result.positions
        ],
        "rows": export_rows(result),
        "variant": None if comparison is None else export_comparison(comparison),
    }


def export_comparison(comparison: Comparison) -> dict[str, object]:
    """The A/B result as JSON data: the passage, its paired share deltas with interval, answers and log-probs."""
    share = comparison.share
    return {
        "passage": share.passage,
        "questions": list(share.questions),
        "before": _interval(share.before),
        "after": _interval(share.after),
        "delta": _interval(share.delta),
        "deltas": share.deltas.round(6).tolist(),
        "top1_before": share.top1_before,
        "top1_after": share.top1_after,
        "answer_changes": [{"question": q, "before": a, "after": b} for q, a, b in comparison.answer_changes],
        "given_answer_logprob": {
            "before": _interval(comparison.logprob_before),
            "after": _interval(comparison.logprob_after),
            "delta": _interval(comparison.logprob_delta),
        },
    }
