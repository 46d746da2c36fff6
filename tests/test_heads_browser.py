"""Real browser (Debian Chromium): the Heads page computes an atlas on demand and draws the role grid,
a head's distributions and its example map, with nothing fetched from outside localhost."""

from __future__ import annotations

import pytest

from attnviz.heads.roles import ROLES
from benchmarks.browser import block_external, screenshot, streamlit_server, wait_idle

pytestmark = [pytest.mark.browser, pytest.mark.slow]

# Streamlit's dataframe toolbar looks up a Material Symbols icon on Google's font host; blocked, it only loses it.
ROLE_NAMES = {role.name for role in ROLES}
ICON_HOST = "https://fonts.gstatic.com/s/i/short-term/release/materialsymbols"


def test_heads_page_draws_the_atlas(chromium, tmp_path) -> None:
    """On MiniLM (a real model whose heads hold roles; the page's default corpus), so the screenshot is the README's."""
    model = "minilm-l6"
    # A fresh cache (the atlas is computed, not read back), and no preload: SmolLM2's conversion is not this test's.
    with streamlit_server(env={"ATTNVIZ_CACHE": str(tmp_path), "ATTNVIZ_PRELOAD": ""}) as url:
        context = chromium.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        blocked = block_external(page)
        page.goto(f"{url}/heads?model={model}")
        wait_idle(page)
        page.get_by_role("button", name="Compute atlas").click(timeout=180_000)
        wait_idle(page, timeout_ms=600_000)
        page.get_by_text("Layer 0, head 0", exact=False).first.wait_for(timeout=600_000)
        wait_idle(page, timeout_ms=600_000)
        page.locator(".js-plotly-plot").nth(2).wait_for(timeout=120_000)  # role grid, distributions, example map
        assert page.get_by_role("button", name="Download atlas (JSON)").count() == 1
        screenshot(page, "heads_page")
        legend = page.locator(".js-plotly-plot").first.locator("text.legendtext").all_text_contents()
        assert legend and set(legend) <= {*ROLE_NAMES, "none"}  # the grid's legend names the roles
        assert [u for u in blocked if not u.startswith(ICON_HOST)] == []
        context.close()
