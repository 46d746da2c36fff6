"""Real-browser helpers shared by the browser tests and the benchmark: a Streamlit server on a
free loopback port, Debian Chromium, and offline checks.

Every request that is not to localhost is aborted, so views must work offline.
Screenshots go to ``$ATTNVIZ_SCREENSHOTS`` (``make screenshots`` points it at docs/screenshots/,
which the README shows), else to a temporary folder, so a test run never rewrites tracked files.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("ATTNVIZ_SCREENSHOTS") or Path(tempfile.gettempdir()) / "attnviz-screenshots")
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
# Watch for the script to start running (window.__ran): a page idle again after that has finished the run.
WATCH_RUN = """() => {
  window.__ran = false;
  const app = document.querySelector('[data-testid="stApp"]');
  window.__watch?.disconnect();
  window.__watch = new MutationObserver(() => {
    if (app.dataset.testScriptState === 'running') { window.__ran = true; }
  });
  window.__watch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def streamlit_server(
    timeout: float = 90.0,
    started: list[subprocess.Popen] | None = None,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
) -> Iterator[str]:
    """Run ``streamlit run app.py`` headless on 127.0.0.1; yield its base URL (its process goes to ``started``).

    ``env`` adds to this process's environment; ``log_path`` keeps the server's output (else discarded)."""
    port = free_port()
    command = [
        sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"),
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    # The log goes to a file: an unread pipe fills up under load and then blocks the server.
    log = log_path.open("w+b") if log_path else tempfile.TemporaryFile()  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ | (env or {})
    )
    if started is not None:
        started.append(process)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    raise RuntimeError(f"streamlit did not start:\n{output}") from None
                time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def chromium_path() -> str:
    """Debian's Chromium binary (installed by the README's test command)."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("Debian chromium is missing: run the README's test command, which installs it")
    return path


def block_external(page) -> list[str]:  # noqa: ANN001 - playwright Page
    """Abort every request that leaves localhost; return the list of blocked URLs."""
    blocked: list[str] = []

    def handle(route) -> None:  # noqa: ANN001 - playwright Route
        host = urlparse(route.request.url).hostname or ""
        if route.request.url.startswith(("data:", "blob:", "about:")) or host in {"127.0.0.1", "localhost"}:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", handle)
    return blocked


# True once the script has been idle for ``ms`` without a break, counted from this wait's first poll. A rerun
# an action asked for starts within milliseconds (loopback websocket), so a short quiet spell tells "done"
# from "not started yet" without a fixed pause per call.
IDLE_FOR = """(ms) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const now = performance.now();
  if (window.__idleWait === undefined) { window.__idleWait = {since: null}; }
  if (!app || app.dataset.testScriptState !== 'notRunning') { window.__idleWait.since = null; return false; }
  if (window.__idleWait.since === null) { window.__idleWait.since = now; }
  return now - window.__idleWait.since >= ms;
}"""
QUIET_MS = 250


def wait_idle(page, timeout_ms: int = 180_000) -> None:  # noqa: ANN001 - playwright Page
    """Wait until Streamlit has finished running the script: idle for QUIET_MS without a break."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout_ms)
    page.evaluate("() => { window.__idleWait = {since: null}; }")
    page.wait_for_function(IDLE_FOR, arg=QUIET_MS, timeout=timeout_ms, polling=50)


# Every plotly figure shown is laid out at its container's current width (a hidden one, in a closed
# expander, has no width to match), and every iframe's document has loaded.
DRAWN = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')];
  const laidOut = plots.every(p => p.getBoundingClientRect().width === 0 || (p._fullLayout
    && p.querySelector('.main-svg') && Math.abs(p._fullLayout.width - p.getBoundingClientRect().width) < 2));
  const frames = [...document.querySelectorAll('iframe')].every(f => {
    try { return f.contentDocument === null || f.contentDocument.readyState === 'complete'; }
    catch (error) { return true; }
  });
  return laidOut && frames;
}"""


def wait_drawn(page, timeout_ms: int = 30_000) -> None:  # noqa: ANN001 - playwright Page
    """Wait until every figure is drawn at its width and every iframe has loaded, then two frames more."""
    page.wait_for_function(DRAWN, timeout=timeout_ms, polling=50)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def screenshot(page, name: str) -> Path:  # noqa: ANN001 - playwright Page
    """Save a full-page PNG named ``name`` in SCREENSHOTS."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
