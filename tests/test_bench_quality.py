"""Attribution quality evaluation (benchmarks.quality) on a tiny model with the disk-cached calibration."""

from __future__ import annotations

from attnviz.sources.attribution import METHODS, attribute
from attnviz.sources.calibration import Case, calibration
from benchmarks.quality import RagCase, evaluate_rag, format_quality, read_cases

PASSAGES = ("The cat sleeps on the warm mat.", "Paris is the capital of France.", "Nine plus one is ten.")


def test_shipped_cases_are_well_formed() -> None:
    """The cases ship in the repo: each answer text lies in its gold passage and in no other."""
    cases = read_cases()
    assert len(cases) >= 20
    for rag in cases:
        case = rag.case
        assert case.answer_contains in case.passages[case.gold].lower()
        others = [p for i, p in enumerate(case.passages) if i != case.gold]
        assert all(case.answer_contains not in p.lower() for p in others)
        assert case.answer_contains in rag.given_answer.lower()


def test_evaluate_rag_counts_only_answered_cases_and_scores_every_given_answer(tiny, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    loaded = tiny("llama")
    first = calibration(loaded)
    own = attribute(loaded, "Where is Paris?", PASSAGES, method="attention").answer
    assert own.strip()
    cases = [
        RagCase(Case("Where is Paris?", PASSAGES, 1, own.strip()[:3].lower()), "Paris is in France."),
        RagCase(Case("What sleeps?", PASSAGES, 0, "\u2603never-generated"), "The cat sleeps."),
    ]
    summary = evaluate_rag(loaded, cases)
    assert summary["cases"] == 2 and summary["answered_correctly"] == 1
    assert summary["answered"]["n"] == 1 and summary["given"]["n"] == 2
    assert summary["calibration"]["heads"] == [list(h) for h in first.heads]
    given_rows = [row for row in summary["rows"] if row["given"]]
    assert [row["answer"] for row in given_rows] == ["Paris is in France.", "The cat sleeps."]
    for method in METHODS:
        hits = sum(row[f"top1_{method}"] == row["gold"] for row in given_rows)
        assert summary["given"]["hits"][method] == hits
        assert f"{hits}/2" in format_quality(summary)
    assert summary["seconds_ablation"] > 0 and summary["seconds_attention"] > 0
