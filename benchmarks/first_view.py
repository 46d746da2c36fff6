"""Browser part of the benchmark: time to the drawn head grid and bytes sent to the browser.

Starts the real app, warms the model with a short prompt, then opens the Explore
page with an N-token prompt in Debian Chromium and measures (a) seconds until the
script is idle with the head grid drawn and (b) websocket bytes received on the way.
Prints one JSON line. Run by ``python -m benchmarks``; needs the test set-up.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import sync_playwright

from benchmarks.browser import CHROMIUM_ARGS, block_external, chromium_path, streamlit_server, wait_idle

GRID_DRAWN = "() => [...document.querySelectorAll('.js-plotly-plot')].some(p => p.data && p.data.length)"


def measure(prompt: str) -> dict[str, float]:
    with streamlit_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        block_external(page)
        page.goto(f"{url}/explore?{urlencode({'prompt': 'Warm up the model.'})}")
        wait_idle(page, timeout_ms=600_000)
        received = [0]
        page.on("websocket", lambda ws: ws.on("framereceived", lambda data: received.__setitem__(0, received[0] + len(data))))
        start = time.perf_counter()
        page.goto(f"{url}/explore?{urlencode({'prompt': prompt})}")
        wait_idle(page, timeout_ms=600_000)
        page.wait_for_function(GRID_DRAWN, timeout=600_000)
        seconds = time.perf_counter() - start
        browser.close()
    return {"seconds": seconds, "bytes": float(received[0])}


if __name__ == "__main__":
    print(json.dumps(measure(Path(sys.argv[1]).read_text())))
