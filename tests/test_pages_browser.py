"""Real browser (Debian Chromium): every page at a laptop size (1400×1000) and a projector size (1280×720).

Screenshots are named ``<page>`` and ``<page>_720``; with ATTNVIZ_SCREENSHOTS=docs/screenshots they
refresh the README's images. Each page is opened once, at the laptop size, then the window is resized: the
layout and figures follow the width, and reopening would only rerun the same script. The asserts check what a
first-hour user meets on each page; the ``page`` fixture fails a test whose server log shows an exception
(the browser is never shown tracebacks).
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from benchmarks.browser import screenshot, wait_drawn, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DRAWN = ".js-plotly-plot, [data-testid='stIFrame'], [data-testid='stDataFrame']"
SIZES = {"": (1400, 1000), "_720": (1280, 720)}
LONG_PROMPT = (
    "Mr and Mrs Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal, "
    "thank you very much. They were the last people you'd expect to be involved in anything strange or "
    "mysterious, because they just didn't hold with such nonsense. Mr and Mrs Dursley"
)
PAGES = {
    "home": ("", {}),
    "explore": ("explore", {}),
    "explore_unicode": ("explore", {"prompt": "Hi 👋 a\u200bb שלום مرحبا e\u0301", "layer": "3", "head": "1"}),
    "explore_60_tokens": ("explore", {"prompt": LONG_PROMPT}),
    "explore_minilm": ("explore", {"model": "minilm-l6"}),
    "explore_head_statistics": ("explore", {"view": "Head statistics"}),
    "explore_ablation": ("explore", {"view": "Ablation", "layer": "3", "head": "1"}),
    "explore_rollout": ("explore", {"view": "Aggregates", "aggregate": "rollout", "aggregate_sink": "1"}),
    "explore_rollout_without_sink": ("explore", {"view": "Aggregates", "aggregate": "rollout without sink"}),
    "masks": ("masks", {}),
    "masks_model": ("masks", {}),
    "masks_cells": ("masks", {}),
    "masks_rule": ("masks", {}),
    "bertviz": ("bertviz_views", {}),
    "bertviz_model_view": ("bertviz_views", {}),
}


def choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_idle(page)


def act(page, name: str) -> None:
    """What a user does on the page before the screenshot (views not kept in the URL)."""
    if name == "masks_model":
        page.locator('[data-testid="stRadio"] label').filter(has_text="Masks the model uses").click()
    elif name == "bertviz_model_view":
        page.get_by_text("Model view (grid of layers × heads)").click()
    elif name == "masks_cells":
        choose(page, "Mask", "Custom cells")
    elif name == "masks_rule":
        choose(page, "Mask", "Custom rule")
        rule = page.get_by_label("Rule", exact=True)
        rule.fill("__import__('os')")
        rule.press("Enter")
    else:
        return
    wait_idle(page)
    wait_drawn(page)


def open_at(page, app_url: str, path: str, query: dict[str, str], size: tuple[int, int]) -> None:
    page.set_viewport_size({"width": size[0], "height": size[1]})
    page.goto(f"{app_url}/{path}" + (f"?{urlencode(query)}" if query else ""))
    wait_idle(page)
    if path:
        page.wait_for_selector(DRAWN, timeout=120_000)
        wait_idle(page)  # the first figure can appear while the script still runs the model
    wait_drawn(page)  # plotly and iframes finish drawing after the script


@pytest.mark.parametrize("name", list(PAGES))
def test_page_at_both_sizes(page, app_url: str, name: str) -> None:
    path, query = PAGES[name]
    (first, first_size), *others = SIZES.items()
    open_at(page, app_url, path, query, first_size)
    act(page, name)
    screenshot(page, name + first)
    for suffix, (width, height) in others:
        page.set_viewport_size({"width": width, "height": height})
        wait_drawn(page)  # plotly and iframes redraw at the new width
        screenshot(page, name + suffix)
    plots = page.locator(".js-plotly-plot")
    if name.startswith("explore") and "view" not in query and plots.count() > 1:
        plots.nth(1).scroll_into_view_if_needed()  # the one-head detail map under the grid
        wait_drawn(page)
        screenshot(page, name + "_detail_720")
    assert not page.dialogs


def test_cjk_tokens_are_drawn_with_a_font(page, app_url: str) -> None:
    """Two different CJK characters must draw differently; without a CJK font both are the same empty box."""
    page.goto(app_url)
    wait_idle(page)
    differ = page.evaluate(
        """() => {
            const pixels = (ch) => {
                const canvas = document.createElement("canvas");
                canvas.width = canvas.height = 40;
                const context = canvas.getContext("2d");
                context.font = "32px sans-serif";
                context.fillText(ch, 2, 32);
                return Array.from(context.getImageData(0, 0, 40, 40).data).join(",");
            };
            return pixels("你") !== pixels("好") && pixels("あ") !== pixels("い");
        }"""
    )
    assert differ, "no CJK font: install fonts-noto-cjk (scripts/setup.sh --test does)"
