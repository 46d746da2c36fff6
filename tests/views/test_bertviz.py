"""bertviz views from our traces: exact payload, escaping, bounds, vendored JS, and the page (AppTest)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from attnviz.models.loading import LoadedModel
from attnviz.tracing.trace import Trace, trace
from attnviz.views import bertviz as bv
from attnviz.views import vendor
from attnviz.views.figures import visible_text
from benchmarks.payload import payload_sizes
from tests.apptest import open_page

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_PROMPTS = ("</script><img src=x onerror=alert(1)>", "<svg onload=alert(1)> & <b>bold</b>")
DATA_BLOCK = re.compile(r"<script type='application/json' id='attnviz-bertviz-data'>(.*?)</script>", re.DOTALL)
PAGE_TAGS = {"html", "head", "meta", "body", "div", "span", "select", "option", "script"}


class TagCollector(HTMLParser):
    """Start tags as an HTML parser sees them (script bodies are raw text, as in browsers)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)


def page_tags(html: str) -> list[str]:
    collector = TagCollector()
    collector.feed(html)
    return collector.tags


def payload(html: str) -> dict:
    """The params a view hands to bertviz's JavaScript, decoded as the browser would."""
    blocks = DATA_BLOCK.findall(html)
    assert len(blocks) == 1
    return json.loads(blocks[0])


@pytest.fixture(scope="module", autouse=True)
def vendored() -> None:
    vendor.ensure()


@pytest.fixture(scope="module")
def smol_trace(smollm2: LoadedModel) -> Trace:
    return trace(smollm2, "The quick brown fox jumps over the lazy dog. " * 6)


def test_vendor_is_idempotent_and_pinned() -> None:
    before = [f.path.stat().st_mtime_ns for f in vendor.FILES]
    vendor.ensure()
    assert [f.path.stat().st_mtime_ns for f in vendor.FILES] == before
    assert vendor.missing() == []
    scripts = vendor.inline_scripts()
    assert page_tags(scripts) == ["script"] * (len(vendor.FILES) + 1)
    assert 'define("d3"' in scripts and 'define("jquery"' in scripts
    assert "https://" not in scripts.split("</script>")[-2]  # the AMD shim names no URL


def test_head_view_sends_exactly_the_chosen_rounded_weights(smol_trace: Trace) -> None:
    selection = bv.Selection(layers=(2, 7), heads=(1, 4, 8), window=(5, 30), decimals=3)
    built = bv.build_view(smol_trace, "head", selection)
    params = payload(built.html)
    (panel,) = params["attention"]
    sent = np.asarray(panel["attn"]) / params["scale"]
    expected = smol_trace.attention[[2, 7]][:, [1, 4, 8]][:, :, 5:30, 5:30]
    assert sent.shape == (2, 3, 25, 25)
    assert np.abs(sent - expected).max() <= 0.0005 + 1e-9
    assert panel["left_text"] == [visible_text(t) for t in smol_trace.tokens[5:30]]
    assert params["include_layers"] == [2, 7] and params["layer"] == 2
    assert built.subset.n_bytes == len(built.html.encode("utf-8"))
    assert built.subset.n_lines == 3 * 25 * 25
    assert not built.subset.complete
    assert "cdnjs" not in built.html and "PYTHON_PARAMS" not in built.html.split("attnvizParams()")[1]


def test_model_view_labels_real_layer_and_head_numbers(smol_trace: Trace) -> None:
    selection = bv.Selection(layers=(0, 29), heads=(3, 5), window=(0, smol_trace.n_tokens), decimals=2)
    built = bv.build_view(smol_trace, "model", selection)
    params = payload(built.html)
    assert params["include_layers"] == [0, 29] and params["include_heads"] == [3, 5]
    assert params["total_heads"] == 9 and params["scale"] == 100
    n = smol_trace.n_tokens
    assert np.asarray(params["attention"][0]["attn"]).shape == (2, 2, n, n)
    assert built.subset.n_lines == 2 * 2 * smol_trace.n_tokens**2


@pytest.mark.parametrize("prompt", SCRIPT_PROMPTS)
def test_script_bearing_tokens_stay_inside_the_json(smollm2: LoadedModel, prompt: str) -> None:
    traced = trace(smollm2, prompt)
    for view in bv.VIEWS:
        html = bv.fit(traced, view, bv.default_selection(traced, view)).html
        assert set(page_tags(html)) <= PAGE_TAGS  # no element from the prompt
        assert "<img" not in html and "<svg" not in html and "<b>" not in html
        sent = "".join(payload(html)["attention"][0]["left_text"])
        assert sent == "".join(visible_text(t) for t in traced.tokens)  # shown as the same text


def test_encoder_view_from_minilm(minilm: LoadedModel) -> None:
    traced = trace(minilm, "Attention is all you need.")
    built = bv.build_view(traced, "head", bv.default_selection(traced, "head"))
    (panel,) = payload(built.html)["attention"]
    assert panel["left_text"][0] == "[CLS]" and panel["right_text"][-1] == "[SEP]"
    assert built.subset.complete  # short prompt: everything fits
    sent = np.asarray(panel["attn"]) / 1000
    assert np.abs(sent - traced.attention).max() <= 0.0005 + 1e-9


def test_encoder_decoder_view_has_encoder_decoder_and_cross_panels(tiny) -> None:
    traced = trace(tiny("bart"), "A small source sentence here.", target="Une phrase")
    built = bv.build_view(traced, "model", bv.default_selection(traced, "model"))
    panels = {p["name"]: p for p in payload(built.html)["attention"]}
    assert list(panels) == ["Encoder", "Decoder", "Cross"]
    n, t = traced.n_tokens, len(traced.target_tokens)
    assert np.asarray(panels["Cross"]["attn"]).shape == (2, 4, t, n)
    assert panels["Cross"]["left_text"] == [visible_text(x) for x in traced.target_tokens]
    assert np.abs(np.asarray(panels["Cross"]["attn"]) / 1000 - traced.cross_attention).max() <= 0.0005 + 1e-9
    assert "<select id='filter'>" in built.html


def test_fit_shortens_the_window_to_the_byte_bound(smol_trace: Trace) -> None:
    requested = bv.Selection(smol_trace.layers, smol_trace.heads, (0, smol_trace.n_tokens))
    full = bv.build_view(smol_trace, "model", requested)
    bound = full.subset.n_bytes // 2
    built = bv.fit(smol_trace, "model", requested, max_bytes=bound)
    assert built.subset.n_bytes <= bound < full.subset.n_bytes
    start, stop = built.subset.selection.window
    assert stop == smol_trace.n_tokens and 0 < start
    assert built.subset.selection.layers == smol_trace.layers  # the user's layers are kept


def test_fit_respects_the_line_bound(smol_trace: Trace) -> None:
    requested = bv.Selection((0,), smol_trace.heads, (0, smol_trace.n_tokens))
    built = bv.fit(smol_trace, "head", requested, max_lines=5000)
    assert 0 < built.subset.n_lines <= 5000


def test_fit_refuses_when_one_token_is_too_much(smol_trace: Trace) -> None:
    requested = bv.Selection(smol_trace.layers, smol_trace.heads, (0, 4))
    with pytest.raises(bv.ViewError, match="fewer layers or heads"):
        bv.fit(smol_trace, "model", requested, max_bytes=1000)


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (bv.Selection((), (0,), (0, 3)), "at least one layer"),
        (bv.Selection((31,), (0,), (0, 3)), "does not hold layers"),
        (bv.Selection((0,), (0,), (3, 3)), "not inside"),
        (bv.Selection((0,), (0,), (0, 10_000)), "not inside"),
    ],
)
def test_bad_selections_are_refused(smol_trace: Trace, selection: bv.Selection, message: str) -> None:
    with pytest.raises(bv.ViewError, match=message):
        bv.build_view(smol_trace, "head", selection)


def test_payload_sizes_against_bertviz(smollm2: LoadedModel) -> None:
    short = trace(smollm2, "One two three four five six seven eight.")
    sizes = payload_sizes(short)
    assert sizes.bertviz_model_view_bytes is not None
    assert sizes.head_view.n_bytes < bv.MAX_BYTES and sizes.model_view.n_bytes < bv.MAX_BYTES
    everything = bv.Selection(short.layers, short.heads, (0, short.n_tokens))
    ours = bv.build_view(short, "model", everything).subset.n_bytes
    assert ours < sizes.bertviz_model_view_bytes  # same content, inlined JS included
    long = trace(smollm2, "word " * 80)
    long_sizes = payload_sizes(long)
    assert long_sizes.bertviz_model_view_bytes is None
    assert long_sizes.head_view.n_bytes <= bv.MAX_BYTES and long_sizes.model_view.n_bytes <= bv.MAX_BYTES


# --- the page, headless (AppTest) ---


def run_page(prompt: str | None = None, model: str | None = None) -> AppTest:
    at = open_page("bertviz_views", timeout=180, **({"model": model} if model else {}))
    if prompt is not None:
        at.text_area[0].set_value(prompt).run()
    assert not at.exception, at.exception
    return at


def frame_html(at: AppTest) -> str:
    frames = at.get("iframe")
    assert len(frames) == 1
    return frames[0].proto.srcdoc


def test_page_shows_head_view_of_the_default_prompt() -> None:
    at = run_page()
    assert at.title[0].value == "bertviz views"
    params = payload(frame_html(at))
    assert params["include_layers"] == [0]  # one layer, chosen by the page's only layer control
    assert "id='layer'" not in frame_html(at)  # no second layer dropdown inside the view
    assert "".join(params["attention"][0]["left_text"]).endswith("tired.")
    assert any("Page size" in c.value for c in at.caption)
    at.selectbox(key="layer_head_smollm2-135m-instruct").set_value(12).run()
    assert payload(frame_html(at))["include_layers"] == [12]


def test_switching_model_resets_the_layer_and_head_choice() -> None:
    at = run_page()
    at.radio[0].set_value("model").run()
    at.multiselect(key="layers_model_smollm2-135m-instruct").set_value([1]).run()
    at.multiselect(key="heads_model_smollm2-135m-instruct").set_value([2, 8]).run()
    assert any("1 of 30 layers, 2 of 9 heads" in i.value for i in at.info)
    at.selectbox(key="model_select").set_value("minilm-l6").run()
    assert not at.exception
    params = payload(frame_html(at))
    assert params["include_layers"] == list(range(6)) and params["include_heads"] == list(range(12))
    assert not any("of 6 layers" in i.value for i in at.info)  # all of MiniLM's layers and heads, not stale ones


def test_page_model_view_and_subset_notice() -> None:
    at = run_page()
    at.radio[0].set_value("model").run()
    assert not at.exception
    params = payload(frame_html(at))
    assert params["include_layers"] == [0, 6, 12, 17, 23, 29]
    assert any("Showing a subset: 6 of 30 layers" in i.value for i in at.info)


def test_page_escapes_script_bearing_prompt() -> None:
    at = run_page(SCRIPT_PROMPTS[0] + " " + SCRIPT_PROMPTS[1])
    html = frame_html(at)
    assert set(page_tags(html)) <= PAGE_TAGS
    assert "<img" not in html and "<svg" not in html


def test_page_warns_on_empty_prompt_and_empty_selection() -> None:
    at = run_page("   ")
    assert at.warning and "empty" in at.warning[0].value
    at = run_page()
    at.multiselect(key="heads_head_smollm2-135m-instruct").set_value([]).run()
    assert not at.exception
    assert any("at least one layer and one head" in w.value for w in at.warning)
    assert not at.get("iframe")


def test_page_encoder_decoder_model(tiny_model_dir) -> None:
    at = run_page(model=str(tiny_model_dir("bart")))
    names = [p["name"] for p in payload(frame_html(at))["attention"]]
    assert names == ["Encoder", "Decoder", "Cross"]
    assert len(at.slider) == 2  # encoder and decoder token windows


def test_page_says_when_it_shortens_the_window() -> None:
    at = run_page("The quick brown fox jumps over the lazy dog. " * 8)
    at.radio[0].set_value("model").run()
    at.multiselect(key="layers_model_smollm2-135m-instruct").set_value(list(range(30))).run()
    slider = at.slider[0]
    slider.set_value((0, slider.max)).run()
    assert not at.exception
    assert any("shortened" in w.value for w in at.warning)
    params = payload(frame_html(at))
    n = len(params["attention"][0]["left_text"])
    assert 0 < n < slider.max and 30 * 9 * n * n <= bv.MAX_LINES


def test_vendor_detects_missing_and_altered_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vendor, "VENDOR_DIR", tmp_path)
    vendor.inline_scripts.cache_clear()
    try:
        assert vendor.missing() == list(vendor.FILES)
        for file in vendor.FILES:
            (tmp_path / file.name).write_bytes(b"// not the pinned file")
        assert vendor.missing() == list(vendor.FILES)
        with pytest.raises(vendor.VendorError, match="python -m attnviz.views.vendor"):
            vendor.inline_scripts()
    finally:
        vendor.inline_scripts.cache_clear()
