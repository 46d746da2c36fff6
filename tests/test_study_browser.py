"""Real browser (Debian Chromium + Playwright): the Study page runs a typed study with an A/B rewrite and draws it."""

import pytest

from benchmarks.browser import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_study_page_runs_a_typed_study_with_a_rewrite(page, app_url: str) -> None:
    """On the default model (SmolLM2) with its calibrated heads, so the screenshot is the README's picture."""
    page.goto(app_url)  # the root first: a fresh server's deep link would skip app.py's navigation
    wait_idle(page)
    page.goto(f"{app_url}/study")
    wait_idle(page)
    page.get_by_text("Nothing runs before that").wait_for(timeout=120_000)
    assert page.get_by_text("not a production answer engine", exact=False).first.is_visible()
    page.locator('[data-testid="stRadio"]').get_by_text("Type or paste", exact=True).click()
    wait_idle(page)
    page.get_by_role("textbox", name="Passages, one per line (ids P1, P2, …)").fill(
        "Paris is the capital of France.\nOtters hold hands while they sleep.\nThe tram line is being extended."
    )
    page.get_by_role("textbox", name="Questions, one per line").fill(
        "What is the capital of France? | Paris\nWho holds hands? | Otters"
    )
    page.get_by_role("spinbutton", name="Orders per question (K)").fill("2")
    page.locator('[data-testid="stRadio"]').get_by_text("rotation", exact=True).click()
    page.get_by_text("Compare a rewrite (A/B)", exact=True).click()
    page.get_by_role("textbox", name="Passage id").fill("P3")
    page.get_by_role("textbox", name="Rewritten passage").fill(
        "Trams will reach the harbour by 2030, the council says."
    )
    page.get_by_test_id("stFormSubmitButton").get_by_role("button").click()
    wait_idle(page, timeout_ms=300_000)
    page.get_by_text("A/B rewrite", exact=True).wait_for(timeout=60_000)
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert page.locator(".js-plotly-plot").count() == 3
    assert page.get_by_text("over 2 questions; top-1 in", exact=False).first.is_visible()
    assert page.get_by_role("button", name="Download CSV").is_visible()
    page.set_viewport_size({"width": 1400, "height": 3600})  # Streamlit scrolls inside; show the whole page
    page.wait_for_timeout(1500)
    screenshot(page, "study")
    assert not page.dialogs
