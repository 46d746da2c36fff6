"""Hostile and broken input on every page (AppTest, real models): a readable message, never a traceback,
and user text never rendered as Markdown or HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import attnviz
from attnviz.models.loading import ModelLoadError
from attnviz.models.safety import canonical_name
from tests.apptest import open_page
from ui import cache
from ui.widgets import CUSTOM

pytestmark = pytest.mark.slow

MARKUP = (
    "<script>alert(1)</script> </script><img src=x onerror=alert(2)> [click](javascript:alert(3)) "
    "![x](http://example.com/a.png)\n\n<b>bold</b> $x^2$ http://example.com/link"
)
UNICODE = (
    "Café 😀👩‍👩‍👧 e\u0301 שלום עולם \u200b\u200d\u202e zero\u2066width \x07bell\x1b[31m tab\tNUL\x00end"
)
MODEL_PAGES = ("explore", "masks", "sources", "bertviz_views")
TEXT_ELEMENTS = ("title", "header", "subheader", "caption", "markdown", "error", "warning", "info", "success")


def rendered_markdown(at: AppTest) -> list[str]:
    """Every string the page hands to Streamlit's Markdown renderer."""
    return [str(e.value) for kind in TEXT_ELEMENTS for e in at.get(kind)]


def assert_no_live_markup(at: AppTest) -> None:
    """No traceback, and no user markup that Markdown would turn into a link, image, HTML or maths."""
    assert not at.exception, [e.value for e in at.exception]
    for body in rendered_markdown(at):
        body = re.sub(r"\\.", "\x01", body)  # a backslash-escaped character is shown literally
        body = re.sub(r"(`+).*?\1", "\x02", body)  # so is inline code
        for live in (
            "<script",
            "<img",
            "<b>",
            "](http",
            "](javascript",
            "javascript:",
            "$x^2$",
            "http://example",
        ):
            assert live not in body, (live, body)


def literal(markdown: str) -> str:
    """What an escaped Markdown string shows: its backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def chart_json(at: AppTest) -> str:
    return "\n".join(chart.proto.spec for chart in at.get("plotly_chart"))


@pytest.mark.parametrize("prompt", ["", "   \n\t  "])
def test_explore_blank_prompt_asks_for_text(prompt: str) -> None:
    at = open_page("explore", prompt=prompt)
    assert_no_live_markup(at)
    assert any("empty" in w.value for w in at.warning)
    assert not at.get("plotly_chart")


@pytest.fixture()
def no_long_prompts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A classroom server started with ATTNVIZ_MAX_LONG_TOKENS=ATTNVIZ_MAX_TOKENS: no summarised long prompts."""
    monkeypatch.setattr(cache, "MAX_LONG_TOKENS", cache.MAX_TOKENS)


@pytest.mark.usefixtures("no_long_prompts")
def test_explore_100k_paste_is_refused_before_tokenizing_and_kept_out_of_the_url() -> None:
    at = open_page("explore")
    at.text_area(key="prompt").set_value("word " * 20_000).run()
    assert_no_live_markup(at)
    (message,) = [w.value for w in at.warning]
    assert "100,000 characters" in message and f"{cache.MAX_CHARS:,}" in message
    assert "prompt" not in at.query_params
    at.button(key="prompt_cut_chars").click().run()  # keep the first characters: now too many tokens
    assert len(at.text_area(key="prompt").value) == cache.MAX_CHARS
    assert any(f"at most {cache.MAX_TOKENS:,} tokens" in w.value for w in at.warning)
    at.button(key="prompt_cut_tokens").click().run()  # trace the first tokens
    assert_no_live_markup(at)
    assert not at.warning
    caption = next(c.value for c in at.caption if " tokens · " in c.value)
    assert int(caption.split(" · ")[1].split()[0]) <= cache.MAX_TOKENS


@pytest.mark.usefixtures("no_long_prompts")
def test_explore_token_limit_is_checked_before_the_model_runs() -> None:
    at = open_page("explore", prompt="hello " * 1_500)
    assert_no_live_markup(at)
    assert any("1,501 tokens" in w.value and f"{cache.MAX_TOKENS:,}" in w.value for w in at.warning)
    assert at.button(key="prompt_cut_tokens").label == f"Trace the first {cache.MAX_TOKENS:,} tokens"
    assert not at.get("plotly_chart")


@pytest.mark.parametrize("chat", [False, True])
def test_explore_unicode_and_control_characters_trace(chat: bool) -> None:
    at = open_page("explore", prompt=UNICODE, mode="Chat message" if chat else "Text")
    assert_no_live_markup(at)
    assert not at.warning and at.get("plotly_chart")


def test_explore_shows_markup_in_prompt_and_tokens_as_text() -> None:
    at = open_page("explore", prompt=MARKUP)
    assert_no_live_markup(at)
    charts = chart_json(at)
    assert "&lt;" in charts  # token labels arrive escaped for plotly
    for raw in ("<script", "<img", "<b>"):
        assert raw not in charts
    assert at.query_params["prompt"] == MARKUP  # short prompts stay shareable in the URL


@pytest.mark.parametrize("page", MODEL_PAGES)
@pytest.mark.parametrize(
    "model",
    ["![x](http://example.com/a.png)", "http://example.com/x", "<img src=x onerror=alert(1)>", "a\x00b"],
)
def test_markup_model_names_are_refused_as_text(page: str, model: str) -> None:
    at = open_page(page, model=model)
    assert_no_live_markup(at)
    (message,) = [e.value for e in at.error]
    assert "Unknown model" in message


@pytest.mark.parametrize("model", ["/etc", "~", "/etc/../etc/", "../../../../../etc"])
def test_server_paths_in_the_url_get_the_generic_message(model: str) -> None:
    """``?model=/etc`` neither confirms the folder exists nor shows the server's paths or files."""
    at = open_page("explore", model=model)
    assert_no_live_markup(at)
    (message,) = [literal(e.value) for e in at.error]
    assert message.startswith(f"Unknown model '{canonical_name(model)}': not a built-in name"), message
    for leak in ("config.json", str(Path.home()), "passwd", "/etc'"):
        assert leak not in message.replace(f"'{canonical_name(model)}'", ""), message


@pytest.mark.parametrize("page", ["explore", "bertviz_views"])
def test_hostile_url_parameters_are_ignored(page: str) -> None:
    at = open_page(
        page, layer="<script>", head="-1", stack="cross", view="![x](http://example.com/a.png)",
        mode="</script>", target="$x$", colors="javascript:alert(1)",
    )  # fmt: skip
    assert_no_live_markup(at)
    assert not at.error


def test_masks_bad_prompts_get_messages() -> None:
    at = open_page("masks")
    at.text_area(key="prompt").set_value("  ").run()
    assert_no_live_markup(at)
    assert any("empty" in w.value for w in at.warning)
    at.text_area(key="prompt").set_value(MARKUP + UNICODE).run()
    assert_no_live_markup(at)
    assert not at.warning
    at.text_area(key="prompt").set_value("x" * 100_000).run()
    assert_no_live_markup(at)
    assert any("100,000 characters" in w.value for w in at.warning)
    at.radio[0].set_value("Masks the model uses").run()
    at.text_area(key="prompt").set_value("hello " * 1_500).run()
    assert_no_live_markup(at)
    assert any("1,501 tokens" in w.value for w in at.warning)


def test_bertviz_bad_and_hostile_prompts() -> None:
    at = open_page("bertviz_views")
    at.text_area(key="bertviz_prompt").set_value("").run()
    assert_no_live_markup(at)
    assert any("empty" in w.value for w in at.warning)
    at.text_area(key="bertviz_prompt").set_value("x" * 100_000).run()
    assert any("100,000 characters" in w.value for w in at.warning)
    at.text_area(key="bertviz_prompt").set_value(MARKUP + " " + UNICODE).run()
    assert_no_live_markup(at)
    html = at.get("iframe")[0].proto.srcdoc
    for raw in ("<script>alert", "<img src=x", "</script><img", "javascript:alert"):
        assert raw not in html


def test_model_refusals_leave_the_loaded_model_working(
    tiny_model_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown name, no safetensors, remote code, offline hub id, too large: each refused with a message;
    the model loaded before still traces in the same session."""
    no_weights = tmp_path / "no-weights"
    no_weights.mkdir()
    (no_weights / "config.json").write_text((tiny_model_dir("llama") / "config.json").read_text())
    remote = tmp_path / "remote"
    remote.mkdir()
    config = json.loads((tiny_model_dir("llama") / "config.json").read_text())
    (remote / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "evil.Model"}}))
    (remote / "model.safetensors").write_bytes((tiny_model_dir("llama") / "model.safetensors").read_bytes())
    at = open_page("explore", prompt="The cat sat on the mat.")
    assert at.get("plotly_chart")
    refusals = {
        "no-such-model-anywhere": "Unknown model",
        str(no_weights): "no .safetensors",
        str(remote): "trust_remote_code",
        "someone/some-model": "ATTNVIZ_ONLINE",
        str(tiny_model_dir("gpt2")): "ATTNVIZ_MAX_MODEL_GB",
    }
    monkeypatch.setenv("ATTNVIZ_MAX_MODEL_GB", "1e-6")  # only models not loaded yet meet the limit
    at.selectbox(key="model_select").set_value(CUSTOM).run()
    for name, reason in refusals.items():
        at.text_input(key="model_custom").set_value(name).run()
        assert_no_live_markup(at)
        assert any(reason in literal(e.value) for e in at.error), (name, [e.value for e in at.error])
    monkeypatch.delenv("ATTNVIZ_MAX_MODEL_GB")
    at.selectbox(key="model_select").set_value("smollm2-135m-instruct").run()
    assert_no_live_markup(at)
    assert not at.error and at.get("plotly_chart")


def test_too_large_model_is_refused_before_loading(smollm2, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit is checked on the config (meta device); a model loaded earlier keeps tracing."""
    monkeypatch.setenv("ATTNVIZ_MAX_MODEL_GB", "0.1")
    with pytest.raises(ModelLoadError, match=r"0\.5 GB.*up to 0\.1 GB"):
        attnviz.load_model("smollm2-135m-instruct")
    result = attnviz.trace(smollm2, "Still here.")
    np.testing.assert_allclose(result.attention.sum(-1), 1.0, atol=1e-5)
