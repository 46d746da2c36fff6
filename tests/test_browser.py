"""Real browser (Debian Chromium + Playwright): the app loads with no network beyond localhost."""

import pytest

from tests.browser import screenshot, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_home_page_renders_offline(page, app_url: str) -> None:
    page.goto(app_url)
    wait_idle(page)
    assert page.get_by_text("Built-in models (work offline)").is_visible()
    screenshot(page, "home")
    assert not page.dialogs
