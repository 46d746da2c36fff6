"""Sources page (AppTest): a form that runs only on Answer; pasted answers, sentences, escaping, limits and errors."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from attnviz.sources.passages import MAX_PROMPT_CHARS
from tests.apptest import downloaded, open_page, record_downloads
from ui.sources_form import METHOD_LABELS

pytestmark = pytest.mark.slow

EVIL = [
    "<script>alert(1)</script> Ada Pell keeps a pet ferret. <img src=x onerror=alert(2)>",
    "The river floods.\n\n![x](http://example.com/a.png) and [click](javascript:alert(3)) here.",
]


def answer(at: AppTest) -> AppTest:
    """Press the form's Answer button."""
    return next(b for b in at.button if b.label == "Answer").click().run()


def markdown_html(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_nothing_runs_before_answer_is_pressed() -> None:
    at = open_page("sources")
    assert not at.exception, at.exception
    assert at.title[0].value == "Sources"
    assert [t.label for t in at.text_area] == [
        "Passage 1",
        "Passage 2",
        "Passage 3",
        "Passage 4",
        "Passage 5",
    ]
    assert at.text_area[4].value == ""  # the empty box for a new passage
    assert any("press **Answer**" in i.value for i in at.info)
    assert not at.subheader and not at.dataframe  # no model ran


def test_pasted_answer_with_sentence_sources(tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    files = record_downloads(monkeypatch)
    at = open_page("sources", timeout=900, model=str(tiny_model_dir("llama")))
    at.radio(key="sources_origin").set_value("Paste").run()
    at.text_area(key="sources_passage_1").set_value(
        "On Sundays the bakery on Elm Lane sells only cinnamon rolls. It opens at seven."
    )
    at.text_area(key="sources_answer").set_value("Cinnamon rolls.")
    at.radio(key="sources_granularity").set_value("sentence")
    at.checkbox(key="sources_method_naive").uncheck()
    assert not at.checkbox(key="sources_method_ablation").value  # on request by default: attention first
    answer(at)
    assert not at.exception, at.exception
    assert at.text[0].value == "Cinnamon rolls."
    assert any("model did not write it" in c.value and "log-probability" in c.value for c in at.caption)
    table = at.dataframe[0].value
    assert set(table["source"]) == {"[1.1]", "[2.1]", "[2.2]", "[3.1]", "[4.1]"}
    # The attention result comes first; ablation runs on request, its pass budget stated before it runs.
    assert table.columns.tolist() == ["rank", "source", "Attention (calibrated retrieval heads)", "text"]
    check = next(b for b in at.button if b.label == "Check by ablation")
    assert "5 forward passes, leave-one-out" in check.proto.help
    assert any("Check by ablation" in i.value and "5 forward passes" in i.value for i in at.info)
    check.click().run()
    assert not at.exception, at.exception
    assert at.dataframe[0].value.columns.tolist() == [
        "rank",
        "source",
        "Attention (calibrated retrieval heads)",
        METHOD_LABELS["ablation"],
        "text",
    ]
    assert "Check by ablation" not in [b.label for b in at.button]
    assert any(m.label == "Spearman (attention vs ablation)" for m in at.metric)
    subheaders = [s.value for s in at.subheader]
    assert "Sentences by method" in subheaders and "Token by token, inside the top passages" in subheaders
    assert any(m.label == "Held-out accuracy" for m in at.metric)
    assert [b.proto.label for b in at.get("download_button")] == ["Download JSON", "Download CSV"]
    heads = next(box for box in at.selectbox if box.label == "Heads")
    heads.select("All heads").run()  # display options reuse the stored result
    column = "Attention (all heads, without sink)"
    assert not at.exception and column in at.dataframe[0].value.columns
    # The export holds what the table shows, and says how it was aggregated.
    table = at.dataframe[0].value.set_index("source")
    exported = json.loads(downloaded(at, files, "Download JSON"))
    assert exported["ablation"] == {"kind": "leave-one-out", "forward_passes": 5}
    ablation = [table.loc[source["label"], METHOD_LABELS["ablation"]] for source in exported["sources"]]
    assert exported["scores"]["ablation"] == pytest.approx(ablation, abs=1e-4)
    assert exported["settings"] == {
        "attention_aggregation": "All heads", "attention_over": "every head", "attention_value_weighted": False,
        "attention_exclude_sink": True, "attention_shares": False, "answer_token": "Whole answer",
    }  # fmt: skip
    shown = [table.loc[source["label"], column] for source in exported["sources"]]
    assert exported["scores"]["attention"] == pytest.approx(shown, abs=1e-4)
    rows = pd.read_csv(io.BytesIO(downloaded(at, files, "Download CSV")))
    assert set(rows["attention_aggregation"]) == {"All heads"}
    per_source = rows.groupby("source")["attention"].mean()
    assert [per_source[s["label"]] for s in exported["sources"]] == pytest.approx(shown, abs=1e-4)
    assert "Recalibrate" not in [b.label for b in at.button]  # the operator's, by default
    assert any("prepare --recalibrate" in c.value for c in at.caption)
    monkeypatch.setenv("ATTNVIZ_ALLOW_RECALIBRATE", "1")
    assert "Recalibrate" in [b.label for b in at.run().button]


def test_markup_in_question_passages_and_answer_is_shown_as_text(tiny_model_dir) -> None:
    at = open_page("sources", timeout=600, model=str(tiny_model_dir("llama")))
    at.radio(key="sources_mode").set_value("Paste").run()
    at.radio(key="sources_origin").set_value("Paste").run()
    at.text_input(key="sources_question").set_value("What pet? <script>alert(4)</script>")
    at.text_area(key="sources_paste").set_value("\n\n\n".join(EVIL))
    at.text_area(key="sources_answer").set_value("<b>ferret</b> [x](javascript:alert(5))")
    for method in ("attention", "ablation"):
        at.checkbox(key=f"sources_method_{method}").uncheck()
    answer(at)
    assert not at.exception, at.exception
    assert at.text[0].value == "<b>ferret</b> [x](javascript:alert(5))"
    assert set(at.dataframe[0].value["text"]) == {EVIL[0], "The river floods.", EVIL[1].split("\n\n")[1]}
    assert "Baseline (raw mean of all heads)" in at.dataframe[0].value.columns  # not "Attention (…)" twice
    shown = markdown_html(at)
    for raw in ("<script", "<img", "](", "javascript:", "onerror=alert"):
        assert raw not in shown, raw
    assert "&lt;script&gt;alert&#40;1&#41;&lt;/script&gt;" in shown
    assert "\n\n" not in shown  # one line per passage: no blank line can end the HTML block


def test_bad_input_gets_one_clear_message(tiny_model_dir) -> None:
    at = open_page("sources", timeout=600, model=str(tiny_model_dir("llama")))
    at.text_input(key="sources_question").set_value("   ")
    answer(at)
    assert not at.exception
    assert [w.value for w in at.warning] == ["Type a question\\."] and not at.info
    at.text_input(key="sources_question").set_value("q" * 100_000)
    answer(at)
    assert len(at.warning) == 1 and f"at most {MAX_PROMPT_CHARS:,} are accepted" in at.warning[0].value
    refused = at.status[0]  # collapsed by the browser: the reason must be outside it, read at once
    assert refused.label == "Nothing to attribute" and refused.state == "error"
    assert not refused.warning and not refused.get("progress")
    at.text_input(key="sources_question").set_value("Who?")
    for index in range(5):
        at.text_area(key=f"sources_passage_{index}").set_value(" \n ")
    answer(at)
    assert [w.value for w in at.warning] == ["Give at least one passage\\."]
    for method in ("attention", "naive", "ablation"):
        at.checkbox(key=f"sources_method_{method}").uncheck()
    answer(at)
    assert [w.value for w in at.warning] == ["Choose at least one method."]


def test_empty_upload_shows_one_message_and_the_real_limit() -> None:
    at = open_page("sources")
    at.radio(key="sources_mode").set_value("Upload").run()
    uploader = at.get("file_uploader")[0]
    assert "200,000 bytes" in uploader.proto.label
    answer(at)
    assert not at.exception
    assert [w.value for w in at.warning] == ["Upload one or more .txt or .md files, then press Answer."]
    assert not at.info and not at.error


def test_a_second_session_asking_the_same_reuses_the_result(tiny_model_dir, tmp_path, monkeypatch) -> None:
    """A class pressing Answer on the same demo runs the attribution once; a different question runs again."""
    import attnviz.sources.attribution

    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    real, calls = attnviz.sources.attribution.attribute, []

    def counted(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real function, counted
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(attnviz.sources.attribution, "attribute", counted)
    model = str(tiny_model_dir("llama"))
    sessions = []
    for question in ("Which sweet is sold on Sundays?", "Which sweet is sold on Sundays?", "When does it open?"):
        at = open_page("sources", timeout=900, model=model)
        at.radio(key="sources_origin").set_value("Paste").run()
        at.text_input(key="sources_question").set_value(question)
        at.text_area(key="sources_answer").set_value("Cinnamon rolls.")
        answer(at)
        assert not at.exception, at.exception
        sessions.append(at)
    assert calls == ["Which sweet is sold on Sundays?", "When does it open?"]
    assert sessions[0].dataframe[0].value.equals(sessions[1].dataframe[0].value)


def test_ablation_ticked_runs_after_the_attention_result(tiny_model_dir, tmp_path, monkeypatch) -> None:
    """Ticked in the form, ablation runs once the attention attribution is drawn, then both show and are
    exported."""
    import attnviz.sources.attribution

    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    files = record_downloads(monkeypatch)
    calls: list[tuple[str, ...]] = []
    attribute, check = attnviz.sources.attribution.attribute, attnviz.sources.attribution.check_by_ablation

    def attributed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real function, recorded
        calls.append(tuple(args[3]))
        return attribute(*args, **kwargs)

    def checked(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - the real function, recorded
        calls.append(("check by ablation",))
        return check(*args, **kwargs)

    monkeypatch.setattr(attnviz.sources.attribution, "attribute", attributed)
    monkeypatch.setattr(attnviz.sources.attribution, "check_by_ablation", checked)
    at = open_page("sources", timeout=900, model=str(tiny_model_dir("llama")))
    at.radio(key="sources_origin").set_value("Paste").run()
    at.text_area(key="sources_answer").set_value("Cinnamon rolls.")
    at.checkbox(key="sources_method_ablation").check()
    answer(at)
    assert not at.exception, at.exception
    assert calls == [("attention", "naive"), ("check by ablation",)]
    assert METHOD_LABELS["ablation"] in at.dataframe[0].value.columns
    assert "Check by ablation" not in [b.label for b in at.button]
    exported = json.loads(downloaded(at, files, "Download JSON"))
    assert set(exported["scores"]) == {"attention", "naive", "ablation"} and exported["question"]
