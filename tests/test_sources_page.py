"""Sources page (AppTest): default demo answers and attributes; inputs, methods, escaping and errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_page

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def run_page(**query: str) -> AppTest:
    return open_page("sources", timeout=900, **query)


def _markdown_html(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


@pytest.fixture(scope="module")
def demo(smollm2) -> AppTest:
    """The page on its default demo (the first rag_demo case when the shared data exists)."""
    return run_page()


def test_demo_answers_and_shows_every_method(demo: AppTest) -> None:
    assert not demo.exception, demo.exception
    assert demo.title[0].value == "Sources"
    answer = demo.text[0].value
    assert answer.strip()
    subheaders = [s.value for s in demo.subheader]
    for name in ("Answer", "Sources", "Passages by method", "Agreement and faithfulness", "Export"):
        assert name in subheaders
    table = demo.dataframe[0].value
    assert list(table["rank"]) == [1, 2, 3, 4]
    assert {"Leave-one-out ablation", "Attention (mean of all heads)"} <= set(table.columns)
    metrics = {m.label: m.value for m in demo.metric}
    assert "Top-1 match" in metrics and metrics["Top-1 match"] in {"yes", "no"}
    assert len(demo.get("plotly_chart")) == 6  # bar + heatmap per method


def test_demo_offers_json_and_csv_downloads(demo: AppTest) -> None:
    labels = [b.proto.label for b in demo.get("download_button")]
    assert labels == ["Download JSON", "Download CSV"]


def test_changing_aggregation_reuses_the_cached_run(demo: AppTest) -> None:
    heads_box = next(box for box in demo.selectbox if box.label == "Heads")
    heads_box.select("All heads").run()
    assert not demo.exception
    columns = set(demo.dataframe[0].value.columns)
    assert "Attention (all heads)" in columns


def test_paste_mode_splits_on_blank_lines_and_escapes_text(smollm2) -> None:
    at = run_page()
    at.radio[0].set_value("Paste").run()
    evil = "<script>alert(1)</script> Ada Pell keeps a pet ferret."
    at.text_area[0].set_value(f"{evil}\n\n\nThe river floods every spring.").run()
    at.text_input[0].set_value("What pet does Ada Pell keep?").run()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 2
    shown = _markdown_html(at)
    assert "<script>" not in shown
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in shown


def test_list_mode_add_and_remove(smollm2) -> None:
    at = run_page()
    n = len([t for t in at.text_area if t.label.startswith("Passage ")])
    at.button(key="sources_remove_0").click().run()
    assert len([t for t in at.text_area if t.label.startswith("Passage ")]) == n - 1
    add = next(b for b in at.button if b.label == "+ Add passage")
    add.click().run()
    assert len([t for t in at.text_area if t.label.startswith("Passage ")]) == n
    assert not at.exception


def test_empty_question_and_no_methods_warn_instead_of_failing(smollm2) -> None:
    at = run_page()
    at.text_input[0].set_value("   ").run()
    assert not at.exception
    assert any("question" in w.value for w in at.warning)
    at.sidebar.multiselect[0].set_value([]).run()
    assert any("at least one method" in w.value for w in at.warning)
