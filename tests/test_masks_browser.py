"""Real browser (Debian Chromium + Playwright): the Masks page applies a mask and shows the model's masks."""

import pytest

from benchmarks.browser import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_masks_page_applies_a_strided_mask_and_shows_real_masks(page, app_url: str) -> None:
    # Open the app's root first: on a fresh server, a deep link into a `pages/` folder runs Streamlit's
    # old directory-based navigation (the page script alone, without app.py) until st.navigation has run.
    page.goto(app_url)
    wait_idle(page)
    page.goto(f"{app_url}/masks")
    wait_idle(page)
    page.set_viewport_size({"width": 1400, "height": 3400})  # Streamlit scrolls inside; show the whole page
    page.get_by_text("Largest logit change").wait_for(timeout=120_000)  # default: the model's own causal mask
    assert not page.get_by_text("sees the future").count()
    page.get_by_label("Mask", exact=True).click()
    page.get_by_role("option", name="Bidirectional").click()
    wait_idle(page)
    assert page.get_by_text("This decoder now sees the future.").is_visible()
    screenshot(page, "masks_future")
    page.get_by_label("Mask", exact=True).click()
    page.get_by_role("option", name="Strided (sparse)").click()
    wait_idle(page)
    assert page.get_by_text("Scores computed").is_visible()
    assert page.get_by_text("Strided (sparse) mask").first.is_visible()
    assert page.locator(".js-plotly-plot").count() >= 3  # the mask, original and masked attention
    assert not page.get_by_text("sees the future").count()
    assert page.get_by_text(
        "Masks", exact=True
    ).first.is_visible()  # app.py's navigation, not the folder listing
    assert not page.get_by_text("common", exact=True).count()
    screenshot(page, "masks_build")
    page.get_by_text("Masks the model uses").click()
    wait_idle(page)
    assert page.get_by_text("layers 0–29: causal", exact=True).first.is_visible()
    assert page.get_by_text("Chat template", exact=True).is_visible()
    screenshot(page, "masks_model")
    assert not page.dialogs
    # Nothing of ours needs the network; Streamlit's own toolbar may ask Google Fonts for an icon glyph.
    assert all(url.startswith("https://fonts.gstatic.com/") for url in page.blocked_requests)
