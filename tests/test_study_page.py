"""Study page (AppTest): nothing runs before "Run study"; a typed study with an A/B rewrite on a tiny Llama; bad input."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_page

pytestmark = pytest.mark.slow

PASSAGES = (
    "Paris is the capital of France.\nOtters hold hands while they sleep.\nThe tram line is being extended."
)
QUESTIONS = "What is the capital of France? | Paris\nWho holds hands? | Otters"


def run_study(at: AppTest) -> AppTest:
    return next(b for b in at.button if b.label == "Run study").click().run()


def typed(at: AppTest) -> AppTest:
    """Switch to typed input with three passages and two answered questions, 2 rotations, ablation."""
    at.radio(key="study_source").set_value("Type or paste").run()
    at.text_area(key="study_passages").set_value(PASSAGES)
    at.text_area(key="study_questions").set_value(QUESTIONS)
    at.number_input(key="study_orders").set_value(2)
    at.radio(key="study_order_kind").set_value("rotation")
    at.radio(key="study_method").set_value("ablation")  # leave-one-out: no calibration of the tiny model
    return at


def test_nothing_runs_before_run_study_and_the_framing_is_shown() -> None:
    at = open_page("study")
    assert not at.exception, at.exception
    assert at.title[0].value == "Study"
    assert any(
        "attention-based evidence in this model" in i.value and "not a production" in i.value for i in at.info
    )
    assert any("press **Run study**" in i.value for i in at.info)
    assert at.dataframe[0].value["id"].tolist() == [
        "ferry",
        "library",
        "market",
        "bridge",
        "festival",
        "school",
    ]
    assert not at.subheader  # no result drawn


def test_typed_study_with_rewrite_shows_tables_plots_and_exports(tiny_model_dir) -> None:
    at = typed(open_page("study", timeout=600, model=str(tiny_model_dir("llama"))))
    at.checkbox(key="study_ab").check()
    at.text_input(key="study_ab_id").set_value("P3")
    at.text_area(key="study_ab_text").set_value("Trams will reach the harbour by 2030, the council says.")
    run_study(at)
    assert not at.exception, at.exception
    assert [s.value for s in at.subheader] == ["By passage", "By position", "A/B rewrite", "Export"]
    table = at.dataframe[0].value
    assert sorted(table["passage"]) == ["P1", "P2", "P3"]
    assert (table["95% low"] <= table["mean log-prob drop (nats)"]).all() and (
        table["mean log-prob drop (nats)"] <= table["95% high"]
    ).all()
    assert any("2 questions × 2 orders (rotation" in c.value for c in at.caption)
    assert any(t.value.startswith("share ") and "over 2 questions; top-1 in" in t.value for t in at.text)
    assert len(at.get("plotly_chart")) == 3
    assert [b.proto.label for b in at.get("download_button")] == ["Download JSON", "Download CSV"]
    assert "Stop" not in [b.label for b in at.button]  # shown only while the study runs
    # Results stay when a widget changes (no rerun of the model).
    at.radio(key="study_source").set_value("Demo study").run()
    assert not at.exception and "By passage" in [s.value for s in at.subheader]
    assert sorted(at.dataframe[1].value["passage"]) == ["P1", "P2", "P3"]


def test_unknown_rewrite_id_and_empty_questions_are_reported(tiny_model_dir) -> None:
    at = typed(open_page("study", timeout=600, model=str(tiny_model_dir("llama"))))
    at.checkbox(key="study_ab").check()
    at.text_input(key="study_ab_id").set_value("P9")
    run_study(at)
    assert not at.exception and any("No passage has the id 'P9'" in e.value for e in at.error)
    at.checkbox(key="study_ab").uncheck()
    at.text_area(key="study_questions").set_value("   ")
    run_study(at)
    assert any("Give at least one question" in e.value for e in at.error) and not at.subheader
