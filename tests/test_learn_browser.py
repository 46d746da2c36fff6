"""Real browser (Debian Chromium + Playwright): the Learn page steps to the softmax, reveals it, and presents."""

import pytest

from benchmarks.browser import screenshot, wait_drawn, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_learn_page_steps_reveals_and_presents(page, app_url: str) -> None:
    page.goto(app_url)
    wait_idle(page)
    page.goto(f"{app_url}/learn")
    wait_idle(page)
    page.get_by_text("Step 1 of 9").wait_for()
    for step in range(2, 7):
        page.get_by_role("button", name="Next ▶").click()
        page.get_by_text(f"Step {step} of 9").wait_for()
        wait_idle(page)
    assert page.get_by_text("Predict first").is_visible()
    assert page.locator(".js-plotly-plot").count() == 0  # the softmax stays hidden until revealed
    page.get_by_role("button", name="Reveal the softmax").click()
    page.get_by_text("attends most to token").wait_for()
    wait_idle(page)
    assert page.locator(".js-plotly-plot").count() == 1
    screenshot(page, "learn")

    page.set_viewport_size({"width": 1280, "height": 720})
    page.get_by_text("Presenter mode").click()
    wait_idle(page)
    assert not page.locator('[data-testid="stSidebar"]').is_visible()
    page.get_by_role("button", name="◀ Previous").click()
    page.get_by_text("Step 5 of 9").wait_for()
    wait_idle(page)
    next_button = page.get_by_role("button", name="Next ▶").bounding_box()
    assert next_button is not None and next_button["y"] + next_button["height"] <= 720  # reachable on a projector
    assert page.locator(".js-plotly-plot").count() == 1
    screenshot(page, "learn_presenter")
    assert not page.dialogs
    assert all(url.startswith("https://fonts.gstatic.com/") for url in page.blocked_requests)


def test_learn_flash_and_variants_sections_draw(page, app_url: str) -> None:
    page.goto(app_url)
    wait_idle(page)
    page.goto(f"{app_url}/learn")
    page.get_by_text("Step 1 of 9").wait_for()
    page.get_by_text("FlashAttention", exact=True).click()
    page.get_by_text("max |online − full softmax| output").wait_for()
    page.set_viewport_size({"width": 1400, "height": 1500})  # Streamlit scrolls inside; show the whole section
    wait_idle(page)
    assert page.locator(".js-plotly-plot").count() == 1
    screenshot(page, "learn_flash")
    page.get_by_text("Variants", exact=True).click()
    page.get_by_text("Local and strided sparse attention").wait_for(timeout=180_000)
    wait_idle(page)
    page.set_viewport_size({"width": 1400, "height": 2600})  # Streamlit scrolls inside; show the whole section
    wait_idle(page)
    assert page.locator(".js-plotly-plot").count() == 5
    screenshot(page, "learn_variants")
    assert not page.dialogs


def content_bottom(page) -> float:  # noqa: ANN001 - playwright Page
    """The lowest pixel any element of the page's main block reaches, scrolled to the top."""
    return page.evaluate(
        """() => {
            const elements = document.querySelectorAll('[data-testid="stMainBlockContainer"] [data-testid="stElementContainer"]');
            return Math.max(...Array.from(elements, e => e.getBoundingClientRect().bottom));
        }"""
    )


@pytest.mark.parametrize("source", ["Toy (6 numbers per token)", "Loaded model's first layer"])
def test_presenter_mode_fits_every_step_on_a_projector(page, app_url: str, source: str) -> None:
    """At 1280×720, every step of the walkthrough (the softmax revealed) fits without scrolling."""
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(app_url)
    wait_idle(page)
    page.goto(f"{app_url}/learn")
    wait_idle(page)
    page.get_by_text("Step 1 of").first.wait_for()
    page.get_by_label("Numbers from", exact=True).first.click()
    page.get_by_role("option", name=source, exact=True).click()
    wait_idle(page)
    page.get_by_text("Presenter mode").click()
    wait_idle(page)
    total = int(page.get_by_text("Step 1 of").first.inner_text().split(" of ")[1].split(":")[0])
    bottoms = {}
    for step in range(1, total + 1):
        if step > 1:
            page.get_by_role("button", name="Next ▶").click()
            page.get_by_text(f"Step {step} of {total}").wait_for()
            wait_idle(page)
        if page.get_by_role("button", name="Reveal the softmax").count():
            page.get_by_role("button", name="Reveal the softmax").click()
            page.get_by_text("attends most to token").wait_for()
            wait_idle(page)
        wait_drawn(page)
        bottoms[step] = content_bottom(page)
        screenshot(page, f"learn_presenter_{source.split()[0].lower()}_step{step}_720")
    assert all(bottom <= 720 for bottom in bottoms.values()), str(bottoms)
