"""The Explore page driven headless with AppTest on real models: what it shows after each interaction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from attnviz.heads.atlas import atlas
from attnviz.heads.corpus import shipped_corpus
from tests.apptest import open_page
from ui.cache import induction

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def explore(**params: str) -> AppTest:
    """The app opened on the Explore page, with URL query parameters."""
    return open_page("explore", **params)


def chart_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    return [((spec["layout"].get("title") or {}).get("text") or "") for spec in chart_specs(at)]


def show(at: AppTest, section: str) -> AppTest:
    """Switch the page's view (Heads, Aggregates, Head statistics, Ablation)."""
    return at.segmented_control(key="view").set_value(section).run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_default_view_shows_grid_detail_and_url_state() -> None:
    at = explore()
    assert_clean(at)
    assert "30 layers × 9 heads" in at.caption[0].value
    grid = chart_specs(at)[0]
    assert [t["type"] for t in grid["data"]] == ["image", "scatter"]
    assert len(grid["data"][1]["customdata"]) == 270
    assert "Layer 0, head 0" in titles(at)[1]
    assert at.query_params["layer"] == "0" and at.query_params["model"] == "smollm2-135m-instruct"
    at.selectbox(key="layer").set_value(5)
    at.selectbox(key="head").set_value(3)
    at.run()
    assert_clean(at)
    assert any("Layer 5, head 3" in title for title in titles(at))
    assert at.query_params["layer"] == "5" and at.query_params["head"] == "3"


def test_shared_link_reopens_the_same_view() -> None:
    at = explore(prompt="A shared link opens this prompt", layer="7", head="2")
    assert_clean(at)
    assert at.text_area(key="prompt").value == "A shared link opens this prompt"
    assert (at.selectbox(key="layer").value, at.selectbox(key="head").value) == (7, 2)
    assert any("Layer 7, head 2" in title for title in titles(at))


def test_changing_prompt_and_chat_mode_retraces() -> None:
    at = explore(prompt="one two three")
    short = at.caption[0].value
    at.text_area(key="prompt").input("one two three four five six seven eight").run()
    assert_clean(at)
    assert (
        at.caption[0].value != short
        and at.query_params["prompt"] == "one two three four five six seven eight"
    )
    plain_tokens = int(at.caption[0].value.split(" tokens")[0].split("· ")[-1])
    at.radio(key="mode").set_value("Chat message").run()
    assert_clean(at)
    chat_tokens = int(at.caption[0].value.split(" tokens")[0].split("· ")[-1])
    assert chat_tokens > plain_tokens  # the chat template adds its role markers
    at.text_area(key="prompt").input("   ").run()
    assert not at.exception and "empty" in at.warning[0].value


def test_aggregates_switch_and_show_last_token_bars() -> None:
    at = show(explore(prompt="The cat sat on the mat because the cat was tired"), "Aggregates")
    assert at.query_params["view"] == "Aggregates"
    for name, title in [
        ("rollout", "Rollout"),
        ("rollout without sink", "Rollout without sink"),
        ("value-norm weighted", "Value-norm weighted"),
        ("model mean", "Model mean"),
    ]:
        at.radio(key="aggregate").set_value(name).run()
        assert_clean(at)
        assert any(t.startswith(title) for t in titles(at)), titles(at)
        # SmolLM2 has an attention sink: plain rollout is explained, the variant needs no explaining.
        assert any("attention sink" in i.value for i in at.info) == (name == "rollout"), name
    assert any(t.startswith("How much the last token") for t in titles(at))


def test_statistics_find_the_induction_heads_in_one_click() -> None:
    at = explore(prompt="Statistics of every head", view="Head statistics")
    at.selectbox(key="statistic").set_value("induction").run()
    assert len(at.get("download_button")) == 2
    table = at.dataframe[0].value
    assert len(table) == 270 and {"entropy", "distance", "first_token", "previous_token", "induction"} <= set(
        table
    )
    at.button(key="open_best").click().run()
    assert_clean(at)
    scores = induction("smollm2-135m-instruct")
    layer, head = np.unravel_index(scores.argmax(), scores.shape)
    assert (at.selectbox(key="layer").value, at.selectbox(key="head").value) == (layer, head)
    assert scores.max() > 0.5
    assert at.segmented_control(key="view").value == "Heads"  # the chosen head opens in detail
    assert any(f"Layer {layer}, head {head}" in title for title in titles(at))


def test_ablation_compares_predictions() -> None:
    at = explore(prompt="The capital of France is", view="Ablation")
    baseline = at.dataframe[0].value
    assert baseline["token"].iloc[0].strip() == "Paris"
    at.multiselect(key="ablate").set_value([(layer, head) for layer in range(4) for head in range(9)]).run()
    assert_clean(at)
    ablated = at.dataframe[1].value
    assert not np.allclose(baseline["probability"].to_numpy(), ablated["probability"].to_numpy())
    assert "Without 36 head(s)" in [h.value for h in at.subheader]
    # What changed is marked: each ablated token's rank move or 'new', each intact token's rank without.
    assert set(ablated["change"]) != {"="}  # switching 36 heads off changes the top-k
    assert all(m in ("new", "=") or m[:2] in ("▲ ", "▼ ") for m in ablated["change"])
    assert not ablated["probability intact"].isna().any()  # a token new to the top-k still has its probability
    new = ablated["change"] == "new"
    assert (ablated["probability intact"][new] < baseline["probability"].min()).all()
    assert (at.dataframe[0].value["rank without"] == "out of top-k").sum() == (ablated["change"] == "new").sum()


def test_a_head_compares_with_the_corpus_of_the_cached_atlas(tiny, tiny_model_dir, tmp_path, monkeypatch) -> None:
    loaded = tiny("llama")  # first: the tiny model borrows a built-in tokenizer from the real cache
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    model = str(tiny_model_dir("llama"))
    at = explore(model=model, prompt="one two three four five six seven", layer="1", head="2")
    at.toggle(key="corpus").set_value(True).run()
    assert_clean(at)
    assert at.query_params["corpus"] == "1"
    assert any("No head atlas of this model" in i.value for i in at.info)  # never built inside Explore
    link = next(link for link in at.page_link if link.value == "Open the Heads page")
    assert link.proto.page == "heads" and "model=" in link.proto.query_string
    built = atlas(loaded, shipped_corpus(), prompts=4)  # what the Heads page caches, on 4 passages
    at.run()
    assert_clean(at)
    table = next(frame.value for frame in at.dataframe if "percentile" in frame.value)
    assert list(table["statistic"]) == ["entropy", "distance", "first_token", "previous_token"]
    li = list(built.statistics).index("entropy")
    assert table["corpus mean"].iloc[0] == pytest.approx(built.mean[1, 2, li])
    assert ((0 <= table["percentile"]) & (table["percentile"] <= 100)).all()
    assert (table["corpus prompts"] == 4).all()
    chart = chart_specs(at)[-1]
    assert [s["y0"] for s in chart["layout"]["shapes"]] == pytest.approx(list(table["this prompt"]))
    assert sum(t["type"] == "box" for t in chart["data"]) == 4
    own = show(at, "Head statistics").dataframe[0].value.set_index(["layer", "head"]).loc[(1, 2)]
    assert list(table["this prompt"]) == pytest.approx([own[name] for name in table["statistic"]])


def test_encoder_model_has_no_prediction_but_everything_else() -> None:
    at = explore(model="minilm-l6", prompt="The bank of the river")
    assert_clean(at)
    assert "6 layers × 12 heads" in at.caption[0].value
    assert len(show(at, "Head statistics").dataframe[0].value) == 72
    assert any("language-model head" in info.value for info in show(at, "Ablation").info)


def test_encoder_decoder_offers_cross_attention(tiny_model_dir) -> None:
    at = explore(model=str(tiny_model_dir("t5")), prompt="translate me please", target="ok")
    assert_clean(at)
    assert at.radio(key="stack").options == [
        "encoder self-attention",
        "decoder self-attention",
        "cross-attention",
    ]
    at.radio(key="stack").set_value("cross").run()
    assert_clean(at)
    assert at.query_params["stack"] == "cross"
    show(at, "Aggregates").radio(key="aggregate").set_value("rollout").run()
    assert any("square self-attention" in w.value for w in at.warning)


def test_long_prompt_stays_small_in_the_browser() -> None:
    words = " ".join(f"w{i % 97}" for i in range(356))
    at = open_page("explore", timeout=900, prompt=words)  # over 1,024 tokens: a summary and one head's trace
    assert_clean(at)
    n = int(at.caption[0].value.split(" tokens")[0].split("· ")[-1])
    assert n >= 1024
    assert at.slider(key="head_query_window").value == (n - 64, n)
    assert at.slider(key="head_key_window").value == (n - 64, n)
    sent = sum(len(chart.proto.spec) for chart in at.get("plotly_chart"))
    assert sent < 8_000_000, sent  # the full tensor would be 30·9·n² floats, over a gigabyte
    # Any region of keys can be seen token by token: labels and hover name each key's position.
    at.slider(key="head_key_window").set_value((100, 164)).run()
    detail, bars = chart_specs(at)[1:3]
    assert detail["data"][0]["x"][0].startswith("100: ") and len(detail["data"][0]["x"]) == 64
    assert len(detail["layout"]["xaxis"]["ticktext"]) == 64  # every key of the window labelled
    assert bars["data"][0]["x"][0] == 100 and len(bars["data"][0]["x"]) == 64


def test_user_text_reaches_plotly_escaped() -> None:
    at = explore(prompt="<img src=x onerror=alert(1)> hi")
    assert_clean(at)
    detail = chart_specs(at)[1]
    labels = " ".join(detail["layout"]["xaxis"]["ticktext"])
    assert "&lt;" in labels and "<img" not in labels
    assert "<img" not in json.dumps(chart_specs(at))


def test_every_setting_survives_a_reopen(tiny_model_dir) -> None:
    """Each widget that changes what is drawn is set away from its default; the URL alone reopens all of them."""
    at = explore(model=str(tiny_model_dir("llama")), prompt="one two three four five six seven")
    chosen = {
        "Heads": {"head_colors": "Magma", "head_log": True, "head_sink": True, "corpus": True},
        "Aggregates": {"aggregate": "rollout", "aggregate_colors": "Cividis", "aggregate_sink": True},
        "Head statistics": {"statistic": "previous_token"},
        "Ablation": {"ablate": [(0, 1), (1, 3)], "top_k": 7},
    }
    kinds = {"colors": "selectbox", "log": "toggle", "sink": "toggle", "aggregate": "radio",
             "statistic": "selectbox", "ablate": "multiselect", "top_k": "slider", "corpus": "toggle"}  # fmt: skip
    for section, values in chosen.items():
        show(at, section)
        for key, value in values.items():
            kind = next(kind for suffix, kind in kinds.items() if key.endswith(suffix))
            getattr(at, kind)(key=key).set_value(value)
        at.run()
        assert_clean(at)
    link = {key: value if isinstance(value, str) else value[-1] for key, value in at.query_params.items()}
    reopened = explore(**link)
    assert "Without 2 head(s)" in [s.value for s in reopened.subheader]  # both heads, not just the sidebar's
    assert len(reopened.dataframe[0].value) == 7
    for section, values in chosen.items():
        show(reopened, section)
        assert_clean(reopened)
        assert {key: reopened.session_state[key] for key in values} == values, section


def test_the_head_shown_first_is_recorded_by_the_summary_pass(replayed_heads: list[tuple[int, int]]) -> None:
    """The head the URL asks for comes from the first view's own pass; another head replays its one layer."""
    at = explore(prompt="The first view of this prompt records layer 7, head 2 in its own pass.", layer="7", head="2")
    assert_clean(at)
    assert "Layer 7, head 2" in titles(at)[1] and replayed_heads == []
    at.selectbox(key="head").set_value(3).run()
    assert_clean(at)
    assert any("Layer 7, head 3" in title for title in titles(at)) and replayed_heads == [(7, 3)]
