"""Real browser (Debian Chromium + Playwright): the app loads with no network beyond localhost."""

from pathlib import Path
from urllib.parse import urlparse

import pytest

from benchmarks.browser import screenshot, streamlit_server, wait_idle
from tests.server_log import assert_no_exceptions_logged

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_home_page_renders_offline(page, app_url: str) -> None:
    page.goto(app_url)
    wait_idle(page)
    assert page.get_by_text("Built-in models (work offline)").is_visible()
    screenshot(page, "home")
    assert not page.dialogs


def test_a_page_opened_by_url_fails_only_streamlits_two_base_path_probes(page, app_url: str) -> None:
    """Streamlit's front end first tries a page's own path as the server's base path (upstream issue
    streamlit/streamlit#7074, see the README's limits): those two 404s, no other failure or console error."""
    failed: list[str] = []
    errors: list[str] = []
    page.on("response", lambda answer: answer.status >= 400 and failed.append(urlparse(answer.url).path))
    page.on("console", lambda message: message.type == "error" and errors.append(console_line(message)))
    page.goto(app_url)
    wait_idle(page)
    assert failed == [] and errors == []  # the root is the base path: nothing to probe
    page.goto(f"{app_url}/learn")
    wait_idle(page)
    probes = ["/learn/_stcore/health", "/learn/_stcore/host-config"]
    assert sorted(failed) == probes
    not_found = "Failed to load resource: the server responded with a status of 404 (Not Found)"
    assert sorted(errors) == [f"{not_found} @ {app_url}{probe}" for probe in probes]


def console_line(message) -> str:  # noqa: ANN001 - playwright ConsoleMessage
    """A console message's text and the URL it is about."""
    return f"{message.text} @ {message.location['url']}"


def test_direct_page_url_uses_the_app_navigation(chromium, tmp_path: Path) -> None:
    """A fresh server first opened at a page URL shows app.py's menu, not Streamlit's legacy pages/ listing."""
    log = tmp_path / "server.log"
    with streamlit_server(env={"PYTHONUNBUFFERED": "1"}, log_path=log) as fresh_url:
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        tab = context.new_page()
        tab.goto(f"{fresh_url}/masks")
        wait_idle(tab)
        sidebar = tab.locator('[data-testid="stSidebar"]')
        sidebar.get_by_role("link", name="Explore", exact=True).wait_for(timeout=60_000)
        links = sidebar.get_by_role("link").all_inner_texts()
        context.close()
    assert [link.split()[-1] for link in links[:8]] == [
        "Home", "Learn", "Explore", "Heads", "Masks", "Sources", "Study", "views",
    ]  # fmt: skip
    assert not any("common" in link for link in links)
    assert_no_exceptions_logged(log)
