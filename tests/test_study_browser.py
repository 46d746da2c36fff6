"""Real browser (Debian Chromium + Playwright): the Study page runs a typed study with an A/B rewrite and draws it,
and its Stop button ends a running study."""

import pytest

from benchmarks.browser import screenshot, wait_drawn, wait_idle

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
    wait_drawn(page)
    screenshot(page, "study")
    assert not page.dialogs


def test_stop_ends_a_running_study_and_keeps_nothing(page, app_url: str) -> None:
    """Stop pressed while the demo study runs (ablation: no calibration; the run ends at its next progress step):
    the page says the study stopped and that nothing was kept, shows no result, and the model is free again."""
    page.goto(app_url)
    wait_idle(page)
    page.goto(f"{app_url}/study")
    wait_idle(page)
    page.get_by_text("Nothing runs before that").wait_for(timeout=120_000)
    page.locator('[data-testid="stRadio"]').get_by_text(
        "Ablation (leave one out; slower)", exact=True
    ).click()
    page.get_by_test_id("stFormSubmitButton").get_by_role("button").click()
    page.get_by_text("question 1 of 12, order 1 of 3", exact=False).wait_for(timeout=120_000)  # running
    stop = page.get_by_test_id("stButton").get_by_role(
        "button", name="Stop"
    )  # ours, not Streamlit's header one
    stop.click()
    wait_idle(page)
    page.get_by_text("The study was stopped before it finished; nothing was kept from it.").wait_for(
        timeout=30_000
    )
    assert page.get_by_text("Nothing runs before that").is_visible()
    assert page.locator(".js-plotly-plot").count() == 0 and page.get_by_text("By passage").count() == 0
    assert (
        not stop.is_visible() and page.get_by_text("of 12, order", exact=False).count() == 0
    )  # no progress left
    page.set_viewport_size({"width": 1400, "height": 1600})  # the title, the message and the form's button
    wait_drawn(page)
    screenshot(page, "study_stopped")
    # The stopped run gave its turn on the model back: a small study runs at once.
    page.locator('[data-testid="stRadio"]').get_by_text("Type or paste", exact=True).click()
    wait_idle(page)
    page.get_by_role("textbox", name="Passages, one per line (ids P1, P2, …)").fill(
        "Paris is the capital of France.\nOtters hold hands while they sleep."
    )
    page.get_by_role("textbox", name="Questions, one per line").fill("What is the capital of France? | Paris")
    page.get_by_role("spinbutton", name="Orders per question (K)").fill("1")
    page.get_by_test_id("stFormSubmitButton").get_by_role("button").click()
    wait_idle(page, timeout_ms=120_000)
    page.get_by_text("By passage", exact=True).wait_for(timeout=60_000)
    assert page.get_by_text("1 questions × 1 orders", exact=False).is_visible()
    assert page.get_by_text("The study was stopped", exact=False).count() == 0
    assert not page.dialogs
