"""Browser part of the benchmark: what a user waits for in Chromium, and the bytes it receives.

``first_view``: with Explore open and the model warm, type a new prompt into the sidebar
(Ctrl+Enter) and time until the script is idle and the head grid shows the new prompt's
figure; websocket bytes received on the way are the first view's payload. Right after each view,
with the server idle, this process times one SDPA forward of the same text: the ratio's baseline,
taken within seconds of its view, because the machine's speed drifts by ±20% over minutes.
``time_to_first_page``: from ``streamlit run`` until Explore shows its traced default prompt;
``first_page_started``: the same page opened once the server has finished starting (its model preloaded).
Run as ``python -m benchmarks.first_view PROMPTS.json`` (a JSON list of [tokens, text]); prints one
JSON line. Called by ``python -m benchmarks``; needs the test set-up (Debian Chromium).
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import Page, sync_playwright

from benchmarks.browser import (
    CHROMIUM_ARGS,
    WATCH_RUN,
    block_external,
    chromium_path,
    streamlit_server,
    wait_idle,
)

# Remember every figure drawn so far, so a finished run can be told from the one before it, and watch for
# the script to start running: a figure redrawn before the new run starts must not count as its result.
MARK_DRAWN = f"""() => {{
  window.__drawn = new Set([...document.querySelectorAll('.js-plotly-plot')].map(p => p.data));
  ({WATCH_RUN})();
}}"""
# The script is idle and the first figure (the head grid) holds data (a freshly opened page).
GRID_DRAWN = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const grid = document.querySelector('.js-plotly-plot');
  return !!(app && app.dataset.testScriptState === 'notRunning' && grid && grid.data && grid.data.length);
}"""
# After MARK_DRAWN: the script ran and is idle again, and the grid holds data the previous run did not draw.
NEW_GRID_DRAWN = f"""() => window.__ran && ({GRID_DRAWN})()
  && !window.__drawn.has(document.querySelector('.js-plotly-plot').data)"""
TIMEOUT_MS = 600_000
# Resolves once the new grid is drawn, checked on each change to the page (and each second, in case the last
# change came first) rather than polled every 50 ms: a poll is work for the browser, beside the server's pass
# on the same two cores, that a user's browser never does.
WAIT_NEW_GRID = f"""(ms) => new Promise((resolve, reject) => {{
  const drawn = {NEW_GRID_DRAWN};
  const done = () => {{ observer.disconnect(); clearInterval(backstop); clearTimeout(limit); resolve(); }};
  const check = () => {{ if (drawn()) {{ done(); }} }};
  const observer = new MutationObserver(check);
  observer.observe(document.body, {{subtree: true, childList: true, attributes: true}});
  const backstop = setInterval(check, 1000);
  const limit = setTimeout(() => {{ observer.disconnect(); clearInterval(backstop); reject(new Error('no new grid')); }}, ms);
  check();
}})"""


def _count_bytes(page: Page) -> list[int]:
    """A one-item list holding the websocket bytes the page has received since now."""
    received = [0]
    page.on(
        "websocket",
        lambda ws: ws.on("framereceived", lambda data: received.__setitem__(0, received[0] + len(data))),
    )
    return received


def _type_prompt(page: Page, text: str, received: list[int]) -> tuple[float, int]:
    """Seconds and websocket bytes from Ctrl+Enter on a new prompt to its head grid drawn."""
    page.evaluate(MARK_DRAWN)
    box = page.locator('[data-testid="stSidebar"] textarea').first
    box.fill(text)
    before = received[0]
    start = time.perf_counter()
    box.press("Control+Enter")
    page.evaluate(WAIT_NEW_GRID, TIMEOUT_MS)
    return time.perf_counter() - start, received[0] - before


def _sdpa_forward() -> Callable[[str], float]:
    """Seconds of one SDPA forward of a text (last logits only), timed in this process."""
    import torch

    import attnviz
    from benchmarks.run import MODEL, WARM_UP_TOKENS, baseline_work, input_ids, prompt_text

    torch.set_num_threads(min(2, os.cpu_count() or 2))
    loaded = attnviz.load_model(MODEL)
    warm_up = input_ids(loaded, prompt_text(loaded.tokenizer, WARM_UP_TOKENS))
    run = baseline_work(loaded, "sdpa_forward", warm_up)

    def seconds(text: str) -> float:
        inputs = input_ids(loaded, text)
        start = time.perf_counter()
        run(inputs)
        return time.perf_counter() - start

    return seconds


def first_views(prompts: list[tuple[int, str]]) -> list[dict[str, float]]:
    """One timed first view per prompt, in one app and one browser tab (the model loaded and warm),
    each followed by an SDPA forward of its text."""
    results = []
    forward = _sdpa_forward()
    with streamlit_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        block_external(page)
        received = _count_bytes(page)
        page.goto(f"{url}/explore?{urlencode({'prompt': 'Warm up the model.'})}")
        wait_idle(page, timeout_ms=TIMEOUT_MS)
        page.wait_for_function(GRID_DRAWN, timeout=TIMEOUT_MS)
        for tokens, text in prompts:
            seconds, n_bytes = _type_prompt(page, text, received)
            page.wait_for_timeout(500)  # the server and browser settle before the forward is timed
            results.append(
                {"tokens": tokens, "seconds": seconds, "bytes": float(n_bytes), "forward": forward(text)}
            )
        browser.close()
    return results


def _started(log: Path) -> None:
    """Wait until the server's log says its start-up preload is over (ui.startup)."""
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not re.search(r"Preloaded|Could not preload", log.read_text(errors="replace")):
        if time.monotonic() > deadline:
            raise TimeoutError("the server never finished preloading")
        time.sleep(0.2)


def first_pages() -> dict[str, float]:
    """Seconds to Explore's traced default prompt drawn: ``time_to_first_page`` from ``streamlit run``
    (browser already open), and ``first_page_started`` opened on a server that has finished starting."""
    seconds = {}
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as folder:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        for name in ("time_to_first_page", "first_page_started"):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            block_external(page)
            log = Path(folder) / f"{name}.log"
            start = time.perf_counter()
            with streamlit_server(log_path=log) as url:
                if name == "first_page_started":
                    _started(log)
                    start = time.perf_counter()
                page.goto(f"{url}/explore")
                page.wait_for_function(GRID_DRAWN, timeout=TIMEOUT_MS, polling=50)
                seconds[name] = time.perf_counter() - start
            page.close()
        browser.close()
    return seconds


if __name__ == "__main__":
    given = [(int(tokens), str(text)) for tokens, text in json.loads(Path(sys.argv[1]).read_text())]
    print(json.dumps({"first_views": first_views(given), **first_pages()}))
