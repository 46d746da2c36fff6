"""Real browser (Debian Chromium): the Sources page answers the demo and shows attributions, offline."""

from __future__ import annotations

import pytest

from benchmarks.browser import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_sources_page_shows_answer_citations_and_methods(page, app_url: str) -> None:
    # Open the root first: on a fresh server a deep link into `pages/` runs Streamlit's folder navigation.
    page.goto(app_url)
    wait_idle(page)
    page.goto(f"{app_url}/sources")
    wait_idle(page, timeout_ms=900_000)
    page.get_by_text("Passages by method").first.wait_for(timeout=60_000)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    assert page.get_by_text("Leave-one-out ablation").first.is_visible()
    assert page.get_by_role("button", name="Download JSON").is_visible()
    page.set_viewport_size({"width": 1400, "height": 3200})  # Streamlit scrolls inside; show the whole page
    page.wait_for_timeout(1500)
    screenshot(page, "sources")
    # Streamlit's own front end looks up a Material Symbols icon (dataframe toolbar) on Google's font host;
    # blocked, it only loses that icon. Anything else leaving localhost is a failure.
    icon_host = "https://fonts.gstatic.com/s/i/short-term/release/materialsymbols"
    assert not page.dialogs
    assert [url for url in page.blocked_requests if not url.startswith(icon_host)] == []
