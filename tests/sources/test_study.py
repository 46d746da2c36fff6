"""Citation study: statistics on planted rows, orders and positions, A/B pairing, inputs and exports (tiny Llama)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnviz.sources.passages import PassageError
from attnviz.sources.study import Study, StudyCase, compare, orders, run_study, with_passage
from attnviz.sources.study_io import export_json, export_rows, parse_study, typed_study
from attnviz.sources.study_stats import (
    Row,
    bootstrap_interval,
    paired_change,
    passage_summaries,
    position_curve,
)
from attnviz.tracing.inputs import PromptError

HEADS = [(1, 3), (0, 1)]
PASSAGES = (
    ("paris", "Paris is the capital of France."),
    ("otters", "Otters hold hands while they sleep."),
    ("tram", "The city council voted to extend the tram line."),
)


def planted(shares: dict[str, list[float]], positions_of: dict[str, list[int]]) -> list[Row]:
    """Rows for one order per question: passage p has share shares[p][q] at position positions_of[p][q]."""
    rows = []
    for q in range(len(next(iter(shares.values())))):
        best = max(shares, key=lambda p: shares[p][q])
        rows += [Row(q, 0, p, positions_of[p][q], shares[p][q], p == best) for p in shares]
    return rows


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_more_questions() -> None:
    rng = np.random.default_rng(1)
    small, large = bootstrap_interval(rng.normal(0.3, 0.1, 10)), bootstrap_interval(rng.normal(0.3, 0.1, 400))
    assert small.low < small.mean < small.high and large.low < large.mean < large.high
    assert large.high - large.low < (small.high - small.low) / 3
    assert abs(large.mean - 0.3) < 0.02 and large.low < 0.3 < large.high
    assert bootstrap_interval([0.4]) == bootstrap_interval([0.4], seed=5)  # n = 1: no interval to draw
    assert bootstrap_interval([0.4]).low == 0.4


def test_passage_summary_and_position_curve_recover_planted_content_and_position() -> None:
    # Content: "a" always 0.6, "b" 0.3, "c" 0.1; each question also varies which position holds them.
    shares = {"a": [0.6] * 6, "b": [0.3] * 6, "c": [0.1] * 6}
    positions_of = {"a": [0, 1, 2, 0, 1, 2], "b": [1, 2, 0, 1, 2, 0], "c": [2, 0, 1, 2, 0, 1]}
    rows = planted(shares, positions_of)
    summaries = passage_summaries(rows)
    assert [s.passage for s in summaries] == ["a", "b", "c"]
    assert summaries[0].share.mean == pytest.approx(0.6) and summaries[0].share.low == pytest.approx(0.6)
    assert summaries[0].top1_rate == 1.0 and summaries[1].top1_rate == 0.0
    assert summaries[0].leads == (0, 1, 2, 3, 4, 5) and summaries[2].leads == ()
    # Content balanced over positions: the curve is flat at the mean share 1/3.
    curve = position_curve(rows)
    assert [p.position for p in curve] == [0, 1, 2]
    assert all(p.share.mean == pytest.approx(1 / 3) for p in curve)
    assert all(p.share.low < 1 / 3 < p.share.high for p in curve)  # positions hold different passages


def test_position_bias_separated_from_content_when_shares_follow_position() -> None:
    # Share depends only on position (0.5, 0.3, 0.2); every passage visits every position once per question.
    by_position = [0.5, 0.3, 0.2]
    rows = []
    for q in range(4):
        for order in range(3):
            for p, passage in enumerate(["x", "y", "z"]):
                position = (p + order) % 3
                rows.append(Row(q, order, passage, position, by_position[position], position == 0))
    curve = position_curve(rows)
    assert [round(p.share.mean, 6) for p in curve] == by_position
    assert all(s.share.mean == pytest.approx(1 / 3) for s in passage_summaries(rows))  # no content effect
    assert all(s.top1_rate == pytest.approx(1 / 3) for s in passage_summaries(rows))


def test_paired_change_pairs_questions_and_counts_top1() -> None:
    before = planted({"a": [0.2, 0.5, 0.1], "b": [0.8, 0.5, 0.9]}, {"a": [0, 0, 0], "b": [1, 1, 1]})
    after = planted({"a": [0.4, 0.7, 0.6], "b": [0.6, 0.3, 0.4]}, {"a": [0, 0, 0], "b": [1, 1, 1]})
    change = paired_change(before, after, "a")
    assert change.questions == (0, 1, 2)
    np.testing.assert_allclose(change.deltas, [0.2, 0.2, 0.5])
    assert change.delta.mean == pytest.approx(0.3) and change.delta.low >= 0.2 - 1e-9
    assert change.before.mean == pytest.approx(0.8 / 3) and change.after.mean == pytest.approx(1.7 / 3)
    assert (change.top1_before, change.top1_after) == (1, 2)  # q1 ties at 0.5 before: the first passage leads


def test_orders_are_seeded_permutations_or_spread_rotations() -> None:
    first, again, other = orders(6, 3, "random", 4), orders(6, 3, "random", 4), orders(6, 3, "random", 5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert all(sorted(o) == list(range(6)) for o in first)
    np.testing.assert_array_equal(
        orders(6, 3, "rotation"), [[0, 1, 2, 3, 4, 5], [2, 3, 4, 5, 0, 1], [4, 5, 0, 1, 2, 3]]
    )
    assert orders(3, 5, "rotation").shape == (3, 3)  # capped: each passage at each position once


def test_inputs_from_jsonl_csv_and_typed_lines() -> None:
    passages = (("a", "Alpha text."), ("b", "Beta text."))
    study = parse_study(
        "c.jsonl",
        '{"question": "Q1?", "answer": "A1", "passage_ids": ["b", "a"]}\n'
        '{"question": "Q2?"}\n{"question": "Q3?", "passages": ["Own one.", "Own two."]}\n',
        passages,
    )
    assert [c.passage_ids for c in study.cases] == [("b", "a"), ("a", "b"), ("q3.1", "q3.2")]
    assert (
        study.cases[0].answer == "A1" and study.cases[1].answer is None and study.text("q3.2") == "Own two."
    )
    csv_study = parse_study("c.csv", "question,answer,passage_ids\nQ1?,,a|b\nQ2?,Yes,b\n", passages)
    assert [(c.answer, c.passage_ids) for c in csv_study.cases] == [(None, ("a", "b")), ("Yes", ("b",))]
    typed = typed_study("First passage.\n\nSecond passage.\n", "Where? | Here\nWhy?\n")
    assert typed.passages == (("P1", "First passage."), ("P2", "Second passage."))
    assert [(c.question, c.answer) for c in typed.cases] == [("Where?", "Here"), ("Why?", None)]
    with pytest.raises(PassageError, match="no passage has the id 'zz'"):
        parse_study("c.jsonl", '{"question": "Q?", "passage_ids": ["zz"]}', passages)
    with pytest.raises(PassageError, match="line 1 is not JSON"):
        parse_study("c.jsonl", "{oops", passages)


def study_of(answer: str | None = "Paris") -> Study:
    ids = tuple(i for i, _ in PASSAGES)
    return Study(
        PASSAGES,
        (StudyCase("What is the capital of France?", answer, ids), StudyCase("Who sleeps?", "Otters", ids)),
    )


def test_run_study_finds_each_passage_by_id_at_every_position(tiny) -> None:
    loaded = tiny("llama")
    messages: list[str] = []
    result = run_study(
        loaded, study_of(), n_orders=3, order_kind="rotation", heads=HEADS,
        progress=lambda done, what: messages.append(what),
    )  # fmt: skip
    assert messages == ["question 1 of 2, all 3 orders", "question 2 of 2, all 3 orders"]  # batched
    rows = result.rows
    assert len(rows) == 2 * 3 * 3
    for passage, _ in PASSAGES:  # rotations: every passage at every position once per question
        assert sorted(r.position for r in rows if r.passage == passage and r.question == 0) == [0, 1, 2]
    # The share stored for a passage id is the one the model gave that passage's text at that position.
    from attnviz.sources.attribution import attribute

    run = result.runs[1]
    direct = attribute(loaded, "What is the capital of France?", [study_of().text(i) for i in run.passage_ids],
                       method="attention", answer="Paris", heads=HEADS).passage_scores("attention")  # fmt: skip
    np.testing.assert_allclose(run.scores, direct, rtol=1e-5)
    for row in run.rows():
        assert row.share == pytest.approx(float(direct[run.passage_ids.index(row.passage)]))
    assert sum(r.top1 for r in run.rows()) == 1
    assert {s.passage for s in result.passages} == {"paris", "otters", "tram"}
    assert sum(s.share.mean for s in result.passages) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(("method", "steps"), [("attention", 1), ("ablation", 3)])
def test_study_stops_with_whole_questions_only(tiny, method: str, steps: int) -> None:
    """Attention stops between questions (a question's orders run together); ablation also between orders,
    here after question 2's first order, which is then dropped."""
    calls = []
    result = run_study(
        tiny("llama"), study_of(), n_orders=2, heads=HEADS, method=method, progress=lambda d, w: calls.append(w),
        should_stop=lambda: len(calls) >= steps,
    )  # fmt: skip
    assert len(calls) == steps and calls[-1].startswith(
        "question 2 of 2" if steps == 3 else "question 1 of 2"
    )
    assert not result.complete and {r.question for r in result.runs} == {0} and len(result.runs) == 2


def test_ab_rewrite_is_paired_and_reports_answers_and_logprobs(tiny) -> None:
    loaded = tiny("llama")
    base_study = Study(
        PASSAGES, (*study_of().cases, StudyCase("Which tram?", None, tuple(i for i, _ in PASSAGES)))
    )
    base = run_study(loaded, base_study, n_orders=2, seed=3, heads=HEADS, max_new_tokens=4)
    edited = with_passage(base_study, "tram", "Trams run every five minutes on the new line to the harbour.")
    after = run_study(loaded, edited, n_orders=2, seed=3, heads=HEADS, max_new_tokens=4)
    assert [r.passage_ids for r in base.runs] == [r.passage_ids for r in after.runs]  # same orders
    comparison = compare(base, after, "tram")
    share = comparison.share
    old = {
        q: np.mean([r.share for r in base.rows if r.question == q and r.passage == "tram"]) for q in range(3)
    }
    new = {
        q: np.mean([r.share for r in after.rows if r.question == q and r.passage == "tram"]) for q in range(3)
    }
    np.testing.assert_allclose(share.deltas, [new[q] - old[q] for q in range(3)], rtol=1e-6)
    assert comparison.logprob_delta.n == 2  # the two given answers; the generated one is not scored
    assert all(q == 2 for q, _, _ in comparison.answer_changes)
    data = export_json(base, comparison)
    assert data["variant"]["passage"] == "tram" and len(data["variant"]["deltas"]) == 3
    assert len(export_rows(base)) == 3 * 2 * 3 and json.dumps(data)
    with pytest.raises(PromptError, match="No passage has the id"):
        with_passage(base_study, "nope", "x")


def test_cli_study_writes_passages_positions_rows_and_variant(tmp_path, tiny_model_dir) -> None:
    from attnviz.cli import main

    passages = tmp_path / "passages.jsonl"
    passages.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in PASSAGES) + "\n")
    cases = tmp_path / "cases.jsonl"
    cases.write_text('{"question": "Capital of France?", "answer": "Paris"}\n{"question": "Who sleeps?"}\n')
    rewrite = tmp_path / "tram.txt"
    rewrite.write_text("Trams now reach the harbour.")
    out = tmp_path / "study.json"
    model = str(tiny_model_dir("llama"))
    args = ["study", "--cases", str(cases), "--passages", str(passages), "--orders", "2", "--seed", "1"]
    args += ["--method", "ablation"]  # leave-one-out: no calibration of the tiny model's heads (minutes)
    assert main([*args, "--variant", f"tram={rewrite}", "--model", model, "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    fields = {"id", "mean_share", "low", "high", "top1_rate", "questions", "leads"}
    assert all(set(p) == fields for p in data["passages"])
    assert {p["id"] for p in data["passages"]} == {"paris", "otters", "tram"}
    assert [p["position"] for p in data["positions"]] == [0, 1, 2]
    assert all(p["low"] <= p["mean_share"] <= p["high"] for p in data["passages"] + data["positions"])
    assert data["method"] == "ablation" and "nats" in data["measure"] and len(data["rows"]) == 2 * 2 * 3
    assert {"question", "order", "passage", "position", "share", "top1"} <= set(data["rows"][0])
    assert data["rows"][0]["answer_origin"] == "given" and data["rows"][-1]["answer_origin"] == "generated"
    variant = data["variant"]
    assert variant["passage"] == "tram" and len(variant["deltas"]) == 2
    assert variant["delta"]["low"] <= variant["delta"]["mean"] <= variant["delta"]["high"]
    assert main([*args, "--variant", "nope=x.txt", "--model", model, "--out", str(out)]) == 2
