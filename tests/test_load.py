"""The classroom load test: its bookkeeping on its own (fast), and its two forms against a real server.

The short forms run 3 closed-loop sessions over Streamlit's websocket protocol, and open-loop arrivals
as Chromium tabs (which also checks drawing, the Sources export in the browser, and offline). They check
correctness only (every session saw its own tokens and its own Sources question, no error, nothing left
localhost); latency and memory are reported by ``python -m benchmarks.load``, never asserted here. Each
runs in its own process: its asyncio Playwright cannot share a thread with the tests' sync one.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
import streamlit
from websockets.asyncio.server import serve

from benchmarks.protocol import ProtocolSession, front_end_paths
from benchmarks.schedule import (
    InFlight,
    Plan,
    Round,
    Session,
    SessionLog,
    on_schedule,
    planned_sessions,
    rounds,
    summary,
)

ROOT = Path(__file__).resolve().parents[1]



T = TypeVar("T")


def run_alone(coroutine: Coroutine[object, object, T]) -> T:
    """``asyncio.run`` in a thread of its own: the browser tests' sync Playwright keeps an event loop running in
    the test thread for the whole session, and asyncio.run refuses to start a second one there."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()

def test_failed_and_late_rounds_count_with_their_time() -> None:
    plan = Plan(seconds=0.0, sources_every=2, round_limit=0.2)

    async def explore(round_: int, first: bool) -> Round:
        await asyncio.sleep(0.0 if round_ == 0 else 5.0)  # round 2 hangs past the limit
        return Round(0, "explore", 0.01)

    async def sources(round_: int) -> Round:
        await asyncio.sleep(0.05)
        raise ConnectionError("server went away")

    log, in_flight = SessionLog(), InFlight()
    run_alone(rounds(Session(0, 0, lambda r: r < 3, plan, in_flight), log, explore, sources))
    assert [(r.page, bool(r.problem)) for r in log.rounds] == [
        ("explore", False),
        ("sources", True),
        ("explore", True),
    ]
    assert "ConnectionError" in log.rounds[1].problem and log.rounds[1].seconds >= 0.05
    assert log.rounds[2].problem == "timed out" and 0.2 <= log.rounds[2].seconds < 1.0
    explore_summary = summary([r for r in log.rounds if r.page == "explore"])
    assert explore_summary["n"] == 2 and explore_summary["failed"] == 1 and explore_summary["max_s"] >= 0.2
    assert in_flight.report()["max"] == 1


def test_open_loop_arrivals_keep_their_schedule_however_busy() -> None:
    plan = Plan(seconds=0.3, sources_every=0, round_limit=5.0, arrivals_per_minute=600)  # one per 0.1 s
    in_flight, began = InFlight(), time.monotonic()
    starts: list[float] = []

    async def explore(round_: int, first: bool) -> Round:
        starts.append(time.monotonic() - began)
        await asyncio.sleep(0.35)  # each round outlasts the interval: they pile up
        return Round(round_, "explore", 0.35)

    planned = planned_sessions(plan, 30, in_flight)  # open loop: the arrivals decide, not ``sessions``
    assert [(s.number, s.first_round) for s in planned] == [(0, 0), (1, 1), (2, 2)]
    logs = [SessionLog() for _ in planned]
    start = lambda s: rounds(s, logs[s.number], explore, explore)  # noqa: E731
    run_alone(on_schedule(planned, start, plan, began))
    assert [len(log.rounds) for log in logs] == [1, 1, 1]
    assert starts == pytest.approx([0.0, 0.1, 0.2], abs=0.05)
    concurrency = in_flight.report()
    assert concurrency["max"] == 3 and 1.5 < concurrency["mean"] <= 3


def test_protocol_client_times_out_on_a_silent_server() -> None:
    async def silent(connection) -> None:  # noqa: ANN001 - websockets connection
        await connection.wait_closed()  # accepts, then never answers

    async def attempt() -> float:
        async with serve(silent, "127.0.0.1", 0, subprotocols=["streamlit"]) as server:
            port = server.sockets[0].getsockname()[1]
            start = time.monotonic()
            async with ProtocolSession(f"http://127.0.0.1:{port}", timeout=0.3) as client:
                with pytest.raises(TimeoutError):
                    await client.run("explore", "")
            return time.monotonic() - start

    assert run_alone(attempt()) < 5


def test_front_end_holds_the_page_scripts_and_plotly() -> None:
    static = Path(streamlit.__file__).parent / "static"
    paths = front_end_paths(
        (static / "index.html").read_text(), json.loads((static / "manifest.json").read_text())
    )
    assert any(p.startswith("static/js/index.") for p in paths) and any("PlotlyChart" in p for p in paths)
    assert any(p.endswith(".css") for p in paths) and all((static / p).is_file() for p in paths)
    assert len(paths) == len(set(paths))


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize(
    ("client", "loop"),
    [
        ("protocol", ["--sessions", "3", "--seconds", "5"]),  # each still runs to its first Sources round
        ("browser", ["--arrivals-per-minute", "24", "--seconds", "7"]),
    ],
)
def test_sessions_each_get_their_own_results(tmp_path: Path, client: str, loop: list[str]) -> None:
    out = tmp_path / "load.json"
    command = [
        sys.executable, "-m", "benchmarks.load", "--client", client, *loop, "--sources-every", "2",
        "--out", str(out),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    report = json.loads(out.read_text())
    assert report["problems"] == [] and result.returncode == 0, (report["problems"], result.stderr[-3000:])
    assert report["explore"]["n"] >= 2 and report["explore"]["failed"] == 0
    assert report["sources"]["n"] >= 1 and report["sources"]["failed"] == 0  # answered, own question checked
    assert report["in_flight"]["max"] >= 1 and report["in_flight"]["mean"] > 0
    assert report["server_peak_rss_mb"] > 0
    if client == "protocol":  # three sessions, each with its first Explore round, and the front end fetched
        assert report["loop"] == "closed" and report["explore_first_open"]["n"] == 3
        assert report["front_end_mb_per_session"] > 1
    else:  # 7 s at 24 a minute: three arrivals (0, 2.5 and 5 s), the second on Sources
        assert report["loop"] == "open" and report["sessions"] == 3
        assert report["explore"]["n"] == 2 and report["sources"]["n"] == 1
