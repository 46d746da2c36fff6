"""The classroom load test in its short form: 8 sessions for 60 s against a real server, once over
Streamlit's websocket protocol and once as Chromium tabs (which also checks drawing and offline).

Checks correctness only (every session saw its own tokens and its own Sources question, no error,
nothing left localhost);
latency and memory are reported by ``python -m benchmarks.load``, never asserted here. It runs
in its own process: its asyncio Playwright cannot share a thread with the tests' sync one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("client", ["protocol", "browser"])
def test_eight_sessions_each_get_their_own_results(tmp_path: Path, client: str) -> None:
    out = tmp_path / "load.json"
    command = [
        sys.executable, "-m", "benchmarks.load", "--sessions", "8", "--seconds", "60", "--client", client,
        "--sources-every", "2", "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["problems"] == []
    assert report["explore"]["n"] >= 8  # every session finished at least its first Explore round
    assert report["sources"]["n"] >= 1  # Sources rounds ran (Answer pressed, the answer shown)
    assert report["server_peak_rss_mb"] > 0
