"""The classroom load test in its short form: 8 browser sessions for 60 s against a real server.

Checks correctness only (every session saw its own tokens, no error, nothing left localhost);
latency and memory are reported by ``python -m benchmarks.load``, never asserted here.
"""

from __future__ import annotations

import asyncio

import pytest

from benchmarks.load import load_test

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_eight_sessions_each_get_their_own_results() -> None:
    report = asyncio.run(load_test(sessions=8, seconds=60, sources_every=3))
    assert report["problems"] == []
    assert report["explore"]["n"] >= 8  # every session finished at least its first Explore round
    assert report["server_peak_rss_mb"] > 0
