"""Learn page (AppTest, no browser): every step, section and variant renders the library's numbers."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from attnviz.learn.recompute import first_layer
from attnviz.learn.steps import steps
from attnviz.learn.toy import toy
from attnviz.learn.walkthrough import MASK_CHOICES
from tests.apptest import open_page
from ui.navigation import PAGES

pytestmark = pytest.mark.slow
SENTENCE = "The cat sat on the mat"
MODEL_SOURCE = "Loaded model's first layer"


def chart_z(at: AppTest, index: int = 0) -> np.ndarray:
    """The z matrix of a plotly chart the page sent (None cells become NaN)."""
    data = json.loads(at.get("plotly_chart")[index].proto.spec)["data"][0]["z"]
    if isinstance(data, dict):  # plotly's binary array encoding
        flat = np.frombuffer(base64.b64decode(data["bdata"]), dtype=data["dtype"])
        shape = tuple(int(side) for side in str(data.get("shape", len(flat))).split(","))
        return flat.reshape(shape)
    return np.array(data, dtype=float)


def step_through(at: AppTest) -> list[str]:
    """Click Next until the last step, revealing the softmax on the way; returns the titles seen."""
    titles = []
    while True:
        assert not at.exception, at.exception
        titles.append(at.subheader[0].value.split(": ", 1)[1])
        if at.button(key="learn_next").disabled:
            return titles
        at.button(key="learn_next").click().run()


def test_learn_page_comes_right_after_home() -> None:
    assert [p.title for p in PAGES][:2] == ["Home", "Learn"]


def test_toy_steps_predict_reveal_and_numbers() -> None:
    at = open_page("learn")
    assert not at.exception and at.title[0].value.startswith("Learn")
    walk = toy(SENTENCE, "causal")
    assert step_through(at) == [s.title for s in steps(walk, 0)]
    np.testing.assert_allclose(chart_z(at), walk.output, atol=1e-6)  # W_O output, head-independent
    for _ in range(3):
        at.button(key="learn_prev").click().run()
    assert at.subheader[0].value == "Step 6 of 9: Softmax, row by row"
    assert not at.get("plotly_chart") and "Predict first" in at.info[0].value
    at.selectbox(key="learn_guess").set_value(4)
    at.button(key="learn_reveal").click().run()
    np.testing.assert_allclose(chart_z(at), walk.weights[0], atol=1e-6)
    assert "attends most to token 4" in at.success[0].value and "right" in at.success[0].value
    at.button(key="learn_prev").click().run()
    at.button(key="learn_next").click().run()
    assert not at.get("plotly_chart"), "moving away and back hides the softmax again"
    assert at.selectbox(key="learn_guess").value is None  # no default taken for a guess
    at.button(key="learn_reveal").click().run()
    assert "guess" not in at.success[0].value  # nobody guessed
    at.button(key="learn_prev").click().run()
    at.button(key="learn_next").click().run()
    at.selectbox(key="learn_guess").set_value(1)
    at.button(key="learn_reveal").click().run()
    token = walk.tokens[1]
    shown = at.success[0].value.replace("\\", "")  # Markdown escapes removed
    assert f"Your guess, token 1 ({token}), was wrong: it got weight {walk.weights[0, 5, 1]:.2f}" in shown


@pytest.mark.parametrize("mask", MASK_CHOICES)
def test_every_mask_temperature_head_and_scale(mask: str) -> None:
    at = open_page("learn")
    at.selectbox(key="learn_mask").set_value(mask)
    at.slider(key="learn_temperature").set_value(2.0)
    at.selectbox(key="learn_head").set_value(1)
    at.toggle(key="learn_scaled").set_value(False).run()
    for _ in range(4):
        at.button(key="learn_next").click().run()
    assert at.subheader[0].value == f"Step 5 of 9: Mask: {mask}"
    walk = toy(SENTENCE, mask, scaled=False, temperature=2.0)
    np.testing.assert_allclose(chart_z(at), np.where(walk.mask, walk.scaled[1], np.nan), atol=1e-6)


def test_scale_step_shows_saturation() -> None:
    at = open_page("learn")
    for _ in range(3):
        at.button(key="learn_next").click().run()
    assert at.subheader[0].value.startswith("Step 4 of 9: Scale")
    at.toggle(key="learn_why").set_value(True).run()
    assert len(at.get("plotly_chart")) == 2 and not at.exception


def test_model_steps_end_with_the_check(smollm2) -> None:
    at = open_page("learn")
    at.selectbox(key="learn_source").set_value(MODEL_SOURCE).run()
    titles = step_through(at)
    assert titles[2] == "Rotary position embedding" and len(titles) == 10
    check = at.success[0].value.replace("\\", "")
    assert "all 9 heads" in check and "(float32): max |difference| 0.0e+00 (≤ 1e-05)" in check
    walk = first_layer(smollm2, SENTENCE)
    np.testing.assert_allclose(chart_z(at), walk.output, atol=1e-5)


def test_flash_section_equals_full_softmax() -> None:
    at = open_page("learn")
    at.radio(key="learn_section").set_value("FlashAttention").run()
    assert float(at.metric[0].value) < 1e-9
    at.slider(key="learn_block").set_value(4).run()
    at.slider(key="learn_tile").set_value(1).run()
    assert not at.exception and "Tile 1 of 2" in at.get("plotly_chart")[0].proto.spec
    assert len(at.dataframe[0].value) == 6


def test_variants_section_with_kv_cache_for_loaded_model() -> None:
    at = open_page("learn")
    at.radio(key="learn_section").set_value("Variants").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["K/V heads"].tolist() == [9, 3, 1]
    assert table["saved vs MHA"].tolist() == ["0%", "67%", "89%"]
    assert len(at.get("plotly_chart")) == 5  # self, cross, two sparse patterns, positions


def test_cost_section_measures_with_progress() -> None:
    at = open_page("learn")
    at.radio(key="learn_section").set_value("Cost").run()
    assert at.info[0].value.startswith("Press")
    at.button(key="learn_measure").click().run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert list(at.dataframe[0].value.index) == ["full", "sliding window", "strided"]


def test_presenter_mode_has_fewer_controls_and_static_css() -> None:
    at = open_page("learn")
    at.toggle(key="learn_presenter").set_value(True).run()
    assert not at.exception
    assert not [s for s in at.selectbox if s.key == "learn_head"]
    assert any("<style>" in m.value for m in at.markdown)
    at.radio(key="learn_section").set_value("FlashAttention").run()
    assert not [s for s in at.slider if s.key == "learn_block"]


@pytest.mark.parametrize(
    ("sentence", "source", "message"),
    [
        ("", "toy", "empty"),
        ("one two three four five six seven eight nine", "toy", "at most 8 words"),
        ("a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q,r,s", "model", "at most 16"),
    ],
)
def test_bad_sentences_get_clear_messages(sentence: str, source: str, message: str) -> None:
    at = open_page("learn")
    if source == "model":
        at.selectbox(key="learn_source").set_value(MODEL_SOURCE)
    at.text_input(key="learn_sentence").set_value(sentence).run()
    assert not at.exception
    shown = [e.value for e in at.error] + [w.value for w in at.warning]
    assert any(message in text.replace("\\", "") for text in shown), shown


def test_one_token_and_hostile_token_text() -> None:
    at = open_page("learn")
    at.text_input(key="learn_sentence").set_value("<b>hi</b>").run()
    assert not at.exception and "only itself" in at.info[0].value
    spec = at.get("plotly_chart")[0].proto.spec
    assert "<b>" not in spec and "&lt;b&gt;" in spec


def test_encoder_model_is_refused_clearly() -> None:
    at = open_page("learn", model="minilm-l6")
    at.selectbox(key="learn_source").set_value(MODEL_SOURCE).run()
    assert not at.exception
    assert "encoder" in at.warning[0].value and "toy" in at.warning[0].value
