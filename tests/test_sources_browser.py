"""Real browser (Debian Chromium): the Sources form answers, attributes pasted answers by sentence, shows markup as text."""

from __future__ import annotations

import pytest

from attnviz.sources.calibration import calibration
from attnviz.sources.passages import MAX_PROMPT_CHARS
from benchmarks.browser import screenshot, wait_drawn, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Streamlit's own front end looks up a Material Symbols icon (dataframe toolbar) on Google's font host;
# blocked, it only loses that icon. Anything else leaving localhost is a failure.
ICON_HOST = "https://fonts.gstatic.com/s/i/short-term/release/materialsymbols"


def open_sources(page, app_url: str) -> None:
    page.goto(f"{app_url}/sources")
    wait_idle(page)
    page.get_by_test_id("stFormSubmitButton").wait_for(timeout=60_000)


def radio(page, group: str, option: str) -> None:
    """Click ``option`` of the radio group whose options include ``group``."""
    page.locator('[data-testid="stRadio"]').filter(has_text=group).get_by_text(option, exact=True).click()
    wait_idle(page)


@pytest.fixture(scope="module", autouse=True)
def calibrated(smollm2) -> None:
    """The built-in model's retrieval heads on disk, as set-up leaves them (``python -m attnviz prepare``;
    found here otherwise, minutes once), so the retrieval-head method always runs."""
    calibration(smollm2)


def press_answer(page) -> None:
    page.get_by_test_id("stFormSubmitButton").get_by_role("button").click()
    wait_idle(page, timeout_ms=900_000)


def assert_nothing_left_localhost(page) -> None:
    assert not page.dialogs
    assert [url for url in page.blocked_requests if not url.startswith(ICON_HOST)] == []


def test_generated_answer_by_passage(page, app_url: str) -> None:
    open_sources(page, app_url)
    assert page.get_by_text("Nothing runs before that").first.is_visible()
    assert not page.locator(".js-plotly-plot").count()
    press_answer(page)
    page.get_by_text("Passages by method").first.wait_for(timeout=60_000)
    page.wait_for_selector(".js-plotly-plot", timeout=120_000)
    assert page.get_by_text("Generated greedily by the model").first.is_visible()
    # Only the retrieval heads' method draws this section.
    assert page.get_by_text("Token by token, inside the top passages").first.is_visible()
    assert page.get_by_role("button", name="Download JSON").is_visible()
    assert page.get_by_role("button", name="Check by ablation").is_visible()  # ablation on request
    page.set_viewport_size({"width": 1400, "height": 3600})  # Streamlit scrolls inside; show the whole page
    wait_drawn(page)
    screenshot(page, "sources")
    assert_nothing_left_localhost(page)


def test_pasted_answer_by_sentence(page, app_url: str) -> None:
    open_sources(page, app_url)
    page.get_by_role("textbox", name="Passage 2", exact=True).fill(
        "The bakery on Elm Lane opened in 1998. On Sundays it sells only cinnamon rolls. It closes at noon."
    )
    radio(page, "Generate", "Paste")
    page.get_by_role("textbox", name="Answer to attribute").fill("Only cinnamon rolls.")
    radio(page, "Sentences", "Sentences")
    press_answer(page)
    page.get_by_text("Sentences by method").first.wait_for(timeout=60_000)
    assert page.get_by_text("the model did not write it").first.is_visible()
    page.get_by_role("button", name="Check by ablation").click()
    wait_idle(page, timeout_ms=900_000)
    page.get_by_text("Spearman (attention vs ablation)").first.wait_for(timeout=60_000)
    assert page.get_by_text("Token by token, inside the top passages").first.is_visible()
    page.set_viewport_size({"width": 1400, "height": 3800})
    # Every method's bar and heatmap drawn, so the screenshot shows the figures, not their placeholders.
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 6", timeout=60_000)
    wait_drawn(page)
    screenshot(page, "sources_sentences")
    assert_nothing_left_localhost(page)


def test_markup_in_passages_runs_nothing_and_fetches_nothing(page, app_url: str) -> None:
    open_sources(page, app_url)
    radio(page, "List", "Paste")
    evil = (
        "<script>alert(1)</script> Ada keeps a <img src=x onerror=alert(2)> ferret.\n\n"
        "Rivers flood.\n\n![x](http://example.com/a.png) [click](javascript:alert(3))"
    )
    page.get_by_role("textbox", name="Passages separated by blank lines").fill(evil)
    page.get_by_role("textbox", name="Question").fill("What pet? <img src=y onerror=alert(4)>")
    for method in ("Attention (retrieval heads)", "Ablation (remove each source)"):
        page.get_by_text(method, exact=True).click()
    press_answer(page)
    page.get_by_text("Passages by method").first.wait_for(timeout=60_000)
    assert page.get_by_text("Attention (mean of all heads)").first.is_visible()
    assert page.locator('[data-testid="stMarkdownContainer"] img').count() == 0
    assert page.locator('[data-testid="stMarkdownContainer"] a[href^="javascript"]').count() == 0
    assert_nothing_left_localhost(page)


def test_a_refusal_shows_its_reason_at_once(page, app_url: str) -> None:
    """A 20,000-character question is refused with the reason in view, not inside the collapsed status box."""
    open_sources(page, app_url)
    page.get_by_role("textbox", name="Question").fill("q" * 20_000)
    press_answer(page)
    reason = page.get_by_text(f"at most {MAX_PROMPT_CHARS:,} are accepted").first
    reason.wait_for(timeout=60_000)
    assert reason.is_visible()
    assert not page.get_by_role("progressbar").count()
    screenshot(page, "sources_refused_720")
    assert_nothing_left_localhost(page)
