"""Real browser (Debian Chromium): bertviz views draw with no network, and prompts never execute."""

from __future__ import annotations

import pytest

from attnviz.models.loading import LoadedModel
from attnviz.tracing.trace import trace
from attnviz.views.figures import visible_text
from benchmarks.browser import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCRIPT_PROMPT = "</script><img src=x onerror=alert(1)> and <svg onload=alert(2)> end"
FRAME = '[data-testid="stIFrame"]'


def open_views(page, app_url: str):  # noqa: ANN001, ANN201 - playwright Page / FrameLocator
    page.set_viewport_size({"width": 1400, "height": 1800})  # tall enough for controls and the view
    page.goto(f"{app_url}/bertviz_views")
    wait_idle(page)
    return page.frame_locator(FRAME)


def drawn_lines(frame) -> int:  # noqa: ANN001 - playwright FrameLocator
    """Wait until bertviz has drawn into the iframe; return how many SVG lines it drew."""
    frame.locator("#vis svg line").first.wait_for(state="attached", timeout=60_000)
    return frame.locator("#vis svg line").count()


def shoot(page, name: str) -> None:  # noqa: ANN001 - playwright Page
    """Screenshot with the view scrolled into sight (Streamlit scrolls its own container)."""
    page.locator(FRAME).scroll_into_view_if_needed()
    screenshot(page, name)


def token_texts(frame) -> list[str]:  # noqa: ANN001 - playwright FrameLocator
    return frame.locator("#vis svg text").all_text_contents()


def test_head_and_model_views_draw_offline(page, app_url: str) -> None:  # noqa: ANN001
    frame = open_views(page, app_url)
    lines = drawn_lines(frame)
    n = len(token_texts(frame)) // 2  # head view: every token on the left and on the right
    assert n > 5 and lines == 9 * n * n  # one line per head, query and key
    assert " tired" in token_texts(frame)
    # The last token is drawn whole: inside the frame, and not cut off by the SVG bertviz draws it in.
    fit = frame.locator("#vis svg text").last.evaluate(
        """text => {
            const svg = text.ownerSVGElement, bottom = text.getBoundingClientRect().bottom;
            const cut = bottom > svg.getBoundingClientRect().bottom;
            return {inside: bottom <= window.innerHeight, clipped: cut && getComputedStyle(svg).overflow !== "visible"};
        }"""
    )
    assert fit == {"inside": True, "clipped": False}
    shoot(page, "bertviz_head_view")

    page.get_by_text("Model view (grid of layers × heads)").click()
    wait_idle(page)
    frame = page.frame_locator(FRAME)
    assert drawn_lines(frame) == 6 * 9 * n * n  # 6 layers × 9 heads by default
    assert "Heads" in token_texts(frame)
    shoot(page, "bertviz_model_view")
    assert not page.blocked_requests, page.blocked_requests  # nothing tried to leave localhost
    assert not page.dialogs


def test_script_bearing_prompt_is_shown_as_text(
    page, app_url: str, smollm2: LoadedModel  # noqa: ANN001 - playwright Page
) -> None:
    expected = [visible_text(t) for t in trace(smollm2, SCRIPT_PROMPT).tokens]
    frame = open_views(page, app_url)
    drawn_lines(frame)
    prompt = page.get_by_role("textbox", name="Prompt")
    prompt.fill(SCRIPT_PROMPT)
    prompt.press("Control+Enter")
    wait_idle(page)
    frame = page.frame_locator(FRAME)
    drawn_lines(frame)
    assert token_texts(frame) == expected + expected  # every token drawn as literal text, left and right
    for scope in (page, frame):
        assert scope.locator("img[src=x], img[onerror]").count() == 0
        assert scope.locator("svg[onload]").count() == 0
    shoot(page, "bertviz_script_prompt")
    assert not page.dialogs


def test_encoder_decoder_cross_attention_draws(page, app_url: str, tiny_model_dir) -> None:  # noqa: ANN001
    page.set_viewport_size({"width": 1400, "height": 1800})
    page.goto(f"{app_url}/bertviz_views?model={tiny_model_dir('bart')}")
    wait_idle(page)
    frame = page.frame_locator(FRAME)
    drawn_lines(frame)
    n_source = len(token_texts(frame)) // 2  # the encoder panel is shown first
    frame.locator("#filter").select_option(label="Cross")
    left = frame.locator("#vis svg #left text").all_text_contents()
    right = frame.locator("#vis svg #right text").all_text_contents()
    assert len(right) == n_source and 0 < len(left) < n_source  # decoder tokens attend to encoder tokens
    assert frame.locator("#vis svg line").count() == 4 * len(left) * len(right)
    shoot(page, "bertviz_cross_attention")
    assert not page.dialogs
