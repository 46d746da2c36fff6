"""Real browser (Debian Chromium): script-bearing input typed into every page, and in model names and URL
parameters, is shown as text: no dialog, no injected element, nothing fetched off localhost."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from benchmarks.browser import wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HOSTILE = (
    "</script><img src=x onerror=alert(1)><svg onload=alert(2)> [click](javascript:alert(3)) "
    "![x](http://example.com/a.png)\n\n<img src=http://example.com/b.png>\n\n$x^2$ "
    '<a href="javascript:alert(4)">a</a> http://example.com/link'
)
INJECTED = (
    "img[src=x], img[onerror], svg[onload], a[href^='javascript'], img[src*='example.com'], "
    "a[href*='example.com'], .katex"
)
HOSTILE_MODELS = ("![x](http://example.com/a.png)", "http://example.com/x", "<img src=x onerror=alert(1)>")


def assert_inert(page) -> None:
    """Nothing the user typed became live markup, ran, or made the browser leave localhost."""
    assert not page.dialogs
    for frame in page.frames:
        assert frame.locator(INJECTED).count() == 0, frame.url
    # Streamlit's front end looks up a Material Symbols icon on Google's font host (blocked, harmless).
    assert [url for url in page.blocked_requests if "/materialsymbols" not in url] == []


def type_into(page, label: str, text: str) -> None:
    box = page.get_by_role("textbox", name=label, exact=True).first
    box.wait_for(timeout=180_000)
    box.fill(text)
    box.press("Control+Enter")
    wait_idle(page)


def test_explore_prompt_box(page, app_url: str) -> None:
    page.goto(f"{app_url}/explore")
    wait_idle(page)
    type_into(page, "Prompt", HOSTILE)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    page.mouse.move(700, 500)  # hover over the grid: hover labels are text too
    page.wait_for_timeout(500)
    ticks = page.locator(".js-plotly-plot .xtick text").all_text_contents()
    # The markup, as literal text (long axes label every k-th token, so look for any of its words).
    assert any("<" in t for t in ticks) and any(w in t for t in ticks for w in ("script", "img", "src", "svg"))
    assert_inert(page)


def test_explore_hostile_url_parameters(page, app_url: str) -> None:
    query = {
        "prompt": HOSTILE,
        "layer": "<script>alert(5)</script>",
        "view": "![x](http://example.com/c.png)",
    }
    page.goto(f"{app_url}/explore?{urlencode(query)}")
    wait_idle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    assert_inert(page)


def test_masks_prompt_boxes(page, app_url: str) -> None:
    page.goto(f"{app_url}/masks")
    wait_idle(page)
    type_into(page, "Prompt", HOSTILE)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    assert_inert(page)
    page.get_by_text("Masks the model uses").click()
    wait_idle(page)
    type_into(page, "Prompt", HOSTILE)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    assert_inert(page)


def test_bertviz_prompt_box(page, app_url: str) -> None:
    page.goto(f"{app_url}/bertviz_views")
    wait_idle(page)
    type_into(page, "Prompt", HOSTILE)
    page.frame_locator('[data-testid="stIFrame"]').locator("#vis svg line").first.wait_for(
        state="attached", timeout=60_000
    )
    assert_inert(page)


@pytest.mark.parametrize("model", HOSTILE_MODELS)
@pytest.mark.parametrize("name", ["explore", "masks", "sources", "bertviz_views"])
def test_hostile_model_names(page, app_url: str, name: str, model: str) -> None:
    page.goto(f"{app_url}/{name}?{urlencode({'model': model})}")
    wait_idle(page)
    page.get_by_text("Unknown model").first.wait_for(timeout=60_000)
    assert_inert(page)
