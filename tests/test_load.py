"""The classroom load test in its short form: 8 browser sessions for 60 s against a real server.

Checks correctness only (every session saw its own tokens, no error, nothing left localhost);
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


def test_eight_sessions_each_get_their_own_results(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    command = [sys.executable, "-m", "benchmarks.load", "--sessions", "8", "--seconds", "60", "--out", str(out)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["problems"] == []
    assert report["explore"]["n"] >= 8  # every session finished at least its first Explore round
    assert report["server_peak_rss_mb"] > 0
