"""Real browser (Debian Chromium): the Explore page draws the head grid, and a click opens a head."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest

from benchmarks.browser import screenshot, wait_idle
from ui.cache import MAX_TOKENS

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROMPT = (
    "Mr and Mrs Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal. "
    "Mr and Mrs Dursley"
)

# Pixel position of a (layer, head) point of the grid's scatter trace, from plotly's own axes (whose
# domains the square grid constrains, so each axis has its own offset).
POINT_JS = """([layer, head]) => {
  const plot = document.querySelectorAll('.js-plotly-plot')[0];
  const trace = plot.data[1];
  const i = trace.customdata.findIndex(c => c[0] === layer && c[1] === head);
  const layout = plot._fullLayout, box = plot.getBoundingClientRect();
  return [box.left + layout.xaxis._offset + layout.xaxis.l2p(trace.x[i]),
          box.top + layout.yaxis._offset + layout.yaxis.l2p(trace.y[i])];
}"""
# The first out-of-date element that has started to dim: its transition and opacity.
STALE_DIMMED = """() => {
  const stale = [...document.querySelectorAll('[data-testid="stElementContainer"][data-stale="true"]')];
  const dim = stale.find(e => getComputedStyle(e).opacity !== '1');
  return dim && {duration: getComputedStyle(dim).transitionDuration, opacity: getComputedStyle(dim).opacity};
}"""

# Elements under one that move or fade when they change (transitions of non-zero duration).
TRANSITIONS = """(root) => [...root.querySelectorAll('*')].map(e => getComputedStyle(e).transitionDuration)
  .filter(d => d.split(', ').some(s => parseFloat(s) > 0))"""


def open_explore(page, app_url: str, **params: str) -> None:  # noqa: ANN001 - playwright Page
    """Open the Explore page with URL state and wait until its figures are drawn."""
    page.goto(f"{app_url}/explore?{urlencode(params)}")
    wait_idle(page)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)


def test_grid_renders_and_a_click_opens_the_head(page, app_url: str) -> None:
    open_explore(page, app_url, prompt=PROMPT, layer="3", head="1")
    assert page.get_by_text("Layer 3, head 1").first.is_visible()
    page.set_viewport_size({"width": 1400, "height": 2300})  # Streamlit scrolls inside; show the whole page
    screenshot(page, "explore_heads")
    page.locator(".js-plotly-plot").first.scroll_into_view_if_needed()
    x, y = page.evaluate(POINT_JS, [12, 4])
    page.mouse.click(x, y)
    wait_idle(page)
    page.get_by_text("Layer 12, head 4").first.wait_for(timeout=60_000)
    assert "layer=12" in page.url and "head=4" in page.url
    page.get_by_text("Head statistics", exact=True).click()
    wait_idle(page)
    page.get_by_label("Statistic", exact=True).click()
    page.get_by_role("option", name="induction", exact=True).click()
    wait_idle(page)
    assert page.get_by_role("button", name="Open the head with the highest induction").is_visible()
    page.set_viewport_size({"width": 1400, "height": 1500})
    screenshot(page, "explore_statistics")
    assert not page.dialogs
    # app.py's Material page icon makes Streamlit fetch its favicon from fonts.gstatic.com (blocked, harmless);
    # everything this page draws must come from localhost.
    assert not [url for url in page.blocked_requests if "/materialsymbols" not in url]


def test_a_1024_token_prompt_draws_the_grid_and_a_window(page, app_url: str) -> None:
    words = " ".join(f"w{i % 97}" for i in range(354))  # 1,022 SmolLM2 tokens (the default limit is 1,024)
    open_explore(page, app_url, prompt=words, layer="18", head="6")
    assert page.get_by_text("1022 tokens").first.is_visible()
    assert page.get_by_text("Query window").first.is_visible()
    assert page.get_by_text("block-averaged").first.is_visible()  # the wide view is downsampled
    page.set_viewport_size({"width": 1400, "height": 2300})
    screenshot(page, "explore_long_prompt")
    assert not page.dialogs


def test_a_prompt_over_the_full_trace_limit_draws_the_grid_from_a_summary(page, app_url: str, smollm2) -> None:
    """Just over MAX_TOKENS, the path SmolLM2's whole 8,192-token context takes: grid and statistics from
    reductions, one head in full, no Aggregates (too costly at that length), prompt not in the URL."""
    paragraph = (
        "The committee met on Tuesday to review the budget. Each member read the report aloud, and the chair "
        "asked whether the numbers for the library, the bridge and the school were final. "
    )
    ids = smollm2.tokenizer(paragraph * 40)["input_ids"][: MAX_TOKENS + 40]
    text = smollm2.tokenizer.decode(ids)
    n = len(smollm2.tokenizer(text)["input_ids"])
    assert MAX_TOKENS < n <= MAX_TOKENS + 40
    open_explore(page, app_url, layer="5", head="4")
    page.get_by_label("Prompt", exact=True).fill(text)
    page.keyboard.press("Control+Enter")
    # While it runs: a progress bar counts the layers reduced, and nothing animates (ui.navigation's
    # NO_ANIMATION_WHILE_RUNNING): the previous prompt's elements dim in one step, not in Streamlit's 1 s fade,
    # and the bar jumps to each value; either animation redraws the page every frame on the cores the run needs.
    progress = page.get_by_test_id("stProgress")
    progress.wait_for(timeout=60_000)
    label = progress.inner_text().strip()
    assert re.fullmatch(r"Summarising every head \(a long prompt: minutes on a CPU\): layer \d+ of 30", label)
    assert progress.evaluate(TRANSITIONS) == []
    dimmed = page.wait_for_function(STALE_DIMMED, timeout=60_000, polling=50).json_value()
    assert dimmed["duration"] == "0s" and float(dimmed["opacity"]) < 0.5, dimmed
    page.get_by_text(f"{n} tokens").first.wait_for(timeout=600_000)
    wait_idle(page, timeout_ms=600_000)
    page.get_by_text("Layer 5, head 4").first.wait_for(timeout=600_000)
    assert page.get_by_text("Query window").first.is_visible()
    assert page.get_by_text("Head statistics", exact=True).first.is_visible()
    assert page.get_by_text("Aggregates", exact=True).count() == 0  # the summary path, not a full trace
    assert "prompt=" not in page.url and "layer=5" in page.url
    grid = page.evaluate("() => document.querySelectorAll('.js-plotly-plot')[0].data[1].customdata.length")
    assert grid == 30 * 9
    page.set_viewport_size({"width": 1400, "height": 2300})
    screenshot(page, "explore_long_summary")
    assert not page.dialogs


def test_a_session_queued_behind_another_pass_shows_its_progress_bar(page, app_url: str, smollm2) -> None:
    """One model serves every session: a short prompt typed while another session's long pass holds the model
    waits, and meanwhile shows the bar (drawn from a timer thread, as st.spinner is), not a blank page."""
    long_text = smollm2.tokenizer.decode(smollm2.tokenizer(PROMPT * 60)["input_ids"][:2000])
    other = page.context.new_page()
    open_explore(page, app_url, layer="2", head="1")
    open_explore(other, app_url, layer="2", head="1")
    page.get_by_label("Prompt", exact=True).fill(long_text)
    page.keyboard.press("Control+Enter")
    page.get_by_test_id("stProgress").wait_for(timeout=60_000)  # the long pass runs (and holds the model)
    other.get_by_label("Prompt", exact=True).fill("A short prompt typed while the model is busy.")
    other.keyboard.press("Control+Enter")
    waiting = other.get_by_test_id("stProgress")
    waiting.wait_for(timeout=60_000)
    assert waiting.inner_text().strip() == "Summarising every head…"  # its own pass has not started
    wait_idle(other, timeout_ms=600_000)
    assert other.get_by_text("Layer 2, head 1").first.is_visible() and waiting.count() == 0
    wait_idle(page, timeout_ms=600_000)
    other.close()
