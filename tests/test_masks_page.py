"""Masks page (AppTest, no browser): every mask type builds, applies and reports numbers from the model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from streamlit.proto.Metric_pb2 import Metric as MetricProto
from streamlit.testing.v1 import AppTest

from attnviz.masks import builders as masks
from attnviz.masks import rules as mask_rules
from attnviz.masks import runs as mask_runs
from attnviz.models.loading import LoadedModel
from attnviz.views.figures import visible_text
from tests.apptest import open_page

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The capital of France is Paris. The capital of Italy is"


def open_masks(model: str | None = None) -> AppTest:
    return open_page("masks", **({"model": model} if model else {}))


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def choose_mask(at: AppTest, kind: str) -> AppTest:
    next(s for s in at.selectbox if s.label == "Mask").set_value(kind)
    return at.run()


@pytest.fixture(scope="module")
def n_tokens(smollm2: LoadedModel) -> int:
    return len(mask_runs.prompt_tokens(smollm2, PROMPT)[0])


def test_app_registers_masks_page_after_home() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.switch_page("pages/masks.py").run()
    assert not at.exception
    assert at.title[0].value == "Masks"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("Causal", lambda n: masks.causal(n)),
        ("Bidirectional", lambda n: masks.bidirectional(n)),
        ("Sliding window", lambda n: masks.sliding_window(n, 4)),
        ("Strided (sparse)", lambda n: masks.strided(n, math.isqrt(n))),
        ("Prefix-LM", lambda n: masks.prefix_lm(n, n // 2)),
        ("Custom rule", lambda n: mask_rules.from_rule(n, "k <= q and q - k < 3")),
    ],
)
def test_each_mask_type_is_applied_with_model_numbers(
    smollm2: LoadedModel, n_tokens: int, kind, expected
) -> None:
    at = choose_mask(open_masks(), kind)
    assert not at.exception
    allowed = expected(n_tokens)
    stats = masks.mask_stats(allowed)
    assert metric(at, "Scores computed") == f"{stats.kept:,}"
    assert metric(at, "Dense attention (n²)") == f"{n_tokens * n_tokens:,}"
    assert metric(at, "Density") == f"{stats.density:.1%}"
    result = mask_runs.compare_mask(smollm2, mask_runs.prompt_tokens(smollm2, PROMPT)[0], allowed)
    assert metric(at, "Loss on the prompt, own mask") == f"{result.original.loss:.3f}"
    assert metric(at, "Loss on the prompt, your mask") == f"{result.masked.loss:.3f}"
    tables = [t.value for t in at.dataframe]
    assert list(tables[0]["next token"]) == [visible_text(t) for t in result.original.prediction.tokens]
    assert list(tables[1]["next token"]) == [visible_text(t) for t in result.masked.prediction.tokens]
    future = [e for e in at.error if "sees the future" in e.value]
    assert bool(future) == (stats.future > 0)
    assert at.get("download_button")


def test_causal_mask_changes_nothing_and_bidirectional_sees_the_future() -> None:
    at = choose_mask(open_masks(), "Causal")
    assert metric(at, "Largest logit change") == "0.000"
    own, yours = metric(at, "Loss on the prompt, own mask"), metric(at, "Loss on the prompt, your mask")
    assert own == yours
    unchanged = next(m for m in at.metric if m.label == "Loss on the prompt, your mask")
    assert unchanged.proto.delta == "no change" and unchanged.proto.color == MetricProto.MetricColor.GRAY
    assert unchanged.proto.direction == MetricProto.MetricDirection.NONE  # no "↑ +0.000" in red
    at = choose_mask(at, "Bidirectional")
    assert float(metric(at, "Largest logit change")) > 1.0
    assert any("sees the future" in e.value for e in at.error)


def test_page_opens_on_the_models_own_mask() -> None:
    at = open_masks()
    assert next(s for s in at.selectbox if s.label == "Mask").value == "Causal"  # a decoder's own mask
    assert metric(at, "Largest logit change") == "0.000" and not any("sees the future" in e.value for e in at.error)
    encoder = open_masks("minilm-l6")
    assert next(s for s in encoder.selectbox if s.label == "Mask").value == "Bidirectional"


def test_both_views_share_one_prompt() -> None:
    at = open_masks()
    at.text_area(key="prompt").set_value("One two three").run()
    at = show_model_masks(at)
    assert len(at.text_area) == 1 and at.text_area(key="prompt").value == "One two three"
    ticks = json.loads(at.get("plotly_chart")[0].proto.spec)["layout"]["xaxis"]["ticktext"]
    assert ticks == ["One", " two", " three"]


def test_block_diagonal_segments_follow_the_separator(n_tokens: int, smollm2: LoadedModel) -> None:
    at = choose_mask(open_masks(), "Block-diagonal")
    assert not at.exception
    tokens = mask_runs.prompt_tokens(smollm2, PROMPT)[1]
    segments = masks.segments_after(tokens, ".")
    assert any(c.value == f"{segments.max() + 1} segment(s)" for c in at.caption)
    assert metric(at, "Scores computed") == f"{masks.mask_stats(masks.block_diagonal(segments)).kept:,}"
    next(r for r in at.radio if r.label == "Inside a segment").set_value("bidirectional").run()
    both_ways = masks.block_diagonal(segments, within=masks.bidirectional)
    assert metric(at, "Scores computed") == f"{masks.mask_stats(both_ways).kept:,}"
    assert any("sees the future" in e.value for e in at.error)


def test_custom_cells_are_applied(n_tokens: int) -> None:
    at = choose_mask(open_masks(), "Custom cells")
    editor = at.data_editor[0]
    assert editor.value.to_numpy(dtype=bool).tolist() == masks.causal(n_tokens).tolist()
    column = editor.value.columns[n_tokens - 1]
    at.session_state[editor.key] = {"edited_rows": {0: {column: True}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert not at.exception
    assert metric(at, "Entries on later tokens") == "1"
    assert metric(at, "Scores computed") == f"{n_tokens * (n_tokens + 1) // 2 + 1:,}"
    assert any("attend to 1 later position," in e.value for e in at.error)  # not "1 later positions"
    assert editor.value.columns.tolist() == [str(i) for i in range(n_tokens)]  # headers a 44 px column can hold


def test_bad_rule_and_empty_rows_warn_instead_of_failing() -> None:
    at = choose_mask(open_masks(), "Custom rule")
    next(t for t in at.text_input if t.label == "Rule").set_value("__import__('os').system('x')").run()
    assert not at.exception
    assert any("Not allowed" in w.value for w in at.warning)
    assert any("\\_\\_import\\_\\_" in w.value for w in at.warning)  # literal, not Markdown bold
    next(t for t in at.text_input if t.label == "Rule").set_value("k > q").run()
    assert not at.exception
    assert any("allow no key" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 1  # the mask is drawn; the model is not run


def test_empty_and_too_long_prompts_warn() -> None:
    at = open_masks()
    at.text_area[0].set_value("   ").run()
    assert not at.exception and any("empty" in w.value for w in at.warning)
    at.text_area[0].set_value("word " * 400).run()
    assert not at.exception and any(f"at most {masks.MAX_MASK_TOKENS}" in w.value for w in at.warning)


def test_token_text_is_escaped_in_figures() -> None:
    at = open_masks()
    at.text_area[0].set_value("<img src=x onerror=alert(1)> hello").run()
    assert not at.exception
    for chart in at.get("plotly_chart"):
        ticks = json.loads(chart.proto.spec)["layout"]["xaxis"]["ticktext"]
        assert "&lt;" in ticks and " onerror=alert(1)&gt;" in "".join(ticks)
        assert not any("<" in tick or ">" in tick for tick in ticks)


def show_model_masks(at: AppTest) -> AppTest:
    at.radio[0].set_value("Masks the model uses")
    return at.run()


def test_decoder_masks_causal_padding_chat_and_transformers_window() -> None:
    at = show_model_masks(open_masks())
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert captions.count("layers 0–29: causal") == 3  # the prompt, the longer batch row, the chat template
    assert any("pad key(s) blocked for every query" in c for c in captions)
    assert any(s.value == "Chat template" for s in at.subheader)
    assert any("identical to attnviz's sliding-window builder with w = 4" in c for c in captions)
    next(s for s in at.selectbox if s.label == "Config").set_value("gemma2").run()
    next(s for s in at.slider if s.label == "sliding_window").set_value(3).run()
    assert any("identical to attnviz's sliding-window builder with w = 3" in c.value for c in at.caption)


def test_encoder_masks_are_bidirectional() -> None:
    at = show_model_masks(open_masks("minilm-l6"))
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert "layers 0–5: bidirectional (everything allowed)" in captions
    assert not any(s.value == "Chat template" for s in at.subheader)


@pytest.mark.parametrize(
    ("family", "expected"),
    [("mistral", "layers 0–1: sliding window of 4"), ("gemma2", "layer 0: sliding window of 4")],
)
def test_sliding_window_models_show_their_window(tiny_model_dir, family: str, expected: str) -> None:
    at = show_model_masks(open_masks(str(tiny_model_dir(family))))
    assert not at.exception
    assert expected in [c.value for c in at.caption]


def test_encoder_decoder_shows_cross_attention(tiny_model_dir) -> None:
    at = open_masks(str(tiny_model_dir("t5")))
    assert not at.exception
    assert any("decoder-only and encoder-only" in i.value for i in at.info)
    at = show_model_masks(at)
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert "layers 0–1: bidirectional (everything allowed)" in captions  # encoder and cross-attention
    assert "layers 0–1: causal" in captions  # decoder self-attention
    titles = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert any("cross-attention" in spec for spec in titles)


def test_encoder_mask_application_reports_hidden_state_change(minilm: LoadedModel) -> None:
    at = choose_mask(open_masks("minilm-l6"), "Causal")
    assert not at.exception
    ids = mask_runs.prompt_tokens(minilm, PROMPT)[0]
    change = mask_runs.compare_mask(minilm, ids, masks.causal(len(ids))).output_change
    assert metric(at, "Largest change of the final hidden states") == f"{change:.4f}"
    assert not any("sees the future" in e.value for e in at.error)
    assert np.isfinite(change)
