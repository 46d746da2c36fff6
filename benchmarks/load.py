"""Classroom load test: N sessions at once against a real ``streamlit run`` on 127.0.0.1.

    python -m benchmarks.load --sessions 30 --seconds 120 --out load.json [--client browser]
    python -m benchmarks.load --arrivals-per-minute 30 --seconds 120 --out load.json   # open loop

Each session is a real Streamlit session: by default a client of Streamlit's own websocket protocol
(:mod:`benchmarks.protocol`: students' browsers on their own machines, each fetching the page's
JavaScript once, as a browser does), or with ``--client browser`` its own Playwright context in one
Chromium on this machine. Closed loop (the default): sessions start together and, until the time is
up (and at least until their first Sources round), alternate between Explore (a new prompt of their
own each round, typed into the prompt box after the first visit) and, every ``--sources-every``
rounds, Sources (a new question of their own, Answer pressed); each sends its next round when the
last one ends. Open loop (``--arrivals-per-minute``): a new session arrives on a fixed schedule,
however busy the server is, and does one round (every ``--sources-every``-th arrival on Sources).

Explore rounds check the figures show the session's own tokens and nobody else's; Sources rounds
wait for the answer and check its export holds the session's own question and its attention
attribution (what the page shows first: answers of sessions asking together are generated in one
batch, and ablation runs only on request, so a round times the wait for the first result); every
round checks for errors. A round that fails or passes ``--round-limit`` counts in the percentiles with the
time it took (the limit, when it ran out) and fails the run (exit status 1). The JSON holds latency
p50/p95/max per page, the concurrency reached (rounds in flight: time-weighted mean and max) and the
server's peak memory (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from urllib.parse import urlencode, urlparse

import numpy as np
from playwright.async_api import TimeoutError as PlaywrightTimeout

from benchmarks.browser import CHROMIUM_ARGS, IDLE, WATCH_RUN, chromium_path, streamlit_server
from benchmarks.memory import peak_mb, rss_mb
from benchmarks.protocol import ProtocolSession, text_state, trigger_state
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

# After WATCH_RUN: the run is over and the page offers the answer's export.
ANSWER_SHOWN = """() => window.__ran
  && document.querySelector('[data-testid="stApp"]').dataset.testScriptState === 'notRunning'
  && [...document.querySelectorAll('[data-testid="stDownloadButton"] button')]
       .some(b => b.textContent.includes('Download JSON'))"""
OWN_TOKENS_DRAWN = """([a, c]) => {
  const ticks = [...document.querySelectorAll('.js-plotly-plot .xtick text')].map(t => t.textContent.trim());
  return ticks.includes(a) && ticks.includes(c);
}"""

# Words SmolLM2 reads as one token each (checked), so a session's prompt shows its own word as a token.
ANIMALS = [
    "cat",
    "dog",
    "horse",
    "lion",
    "tiger",
    "bear",
    "wolf",
    "fox",
    "deer",
    "rabbit",
    "mouse",
    "eagle",
    "shark",
    "whale",
    "snake",
    "frog",
    "duck",
    "goose",
    "sheep",
    "goat",
    "camel",
    "zebra",
    "monkey",
    "turtle",
    "spider",
    "bee",
    "owl",
    "crow",
    "pig",
    "cow",
    "hen",
    "bat",
    "seal",
    "crab",
]
COLOURS = [
    "red",
    "blue",
    "green",
    "yellow",
    "orange",
    "purple",
    "black",
    "white",
    "brown",
    "pink",
    "gray",
    "gold",
    "silver",
]  # one per round
PROBLEMS = (
    '[data-testid="stException"], [data-testid="stAlertContentError"], [data-testid="stAlertContentWarning"]'
)


def prompt_of(session: int, round_: int) -> tuple[str, str, str]:
    """A session's prompt for a round, the word only that session's prompts contain, and the round's word."""
    animal, colour = ANIMALS[session % len(ANIMALS)], COLOURS[round_ % len(COLOURS)]
    return f"The {animal} in room {session} met the {colour} {animal} again on day {round_}.", animal, colour


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (contention-independent cost)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_for_run(page, timeout_ms: int) -> None:
    """Wait until Streamlit has started and finished a script run."""
    await page.wait_for_timeout(300)
    await page.wait_for_selector(IDLE, timeout=timeout_ms)


def tokens_problem(ticks: set[str], animal: str, colour: str) -> str:
    """'' when the drawn tick labels hold this session's tokens and no other session's."""
    others = sorted(a for a in ANIMALS if a in ticks and a != animal)
    if animal not in ticks or colour not in ticks:
        return f"own tokens missing ({animal!r}, {colour!r})"
    return f"another session's tokens shown: {others}" if others else ""


def question_of(session: int, round_: int) -> str:
    """A Sources question only this session asks, new each round (a repeated one reuses the shared result)."""
    animal = prompt_of(session, round_)[1]
    return f"Which passage would a {animal} in room {session} read first on day {round_}?"


async def browser_explore(page, url: str, session: int, round_: int, first: bool, timeout_ms: int) -> Round:
    """Show a new prompt on Explore in the browser; check the grid and the session's own tokens are drawn."""
    prompt, animal, colour = prompt_of(session, round_)
    start = time.monotonic()
    if first:
        await page.goto(f"{url}/explore?{urlencode({'prompt': prompt, 'view': 'Heads'})}")
    else:
        box = page.get_by_label("Prompt", exact=True)
        await box.fill(prompt)
        await box.press("Control+Enter")
    await wait_for_run(page, timeout_ms)
    await page.wait_for_selector(".js-plotly-plot", timeout=timeout_ms)
    try:  # the run may not have started within wait_for_run's grace time: wait for this prompt's tokens
        await page.wait_for_function(OWN_TOKENS_DRAWN, arg=[animal, colour], timeout=timeout_ms)
    except PlaywrightTimeout:
        pass  # reported below as a problem
    seconds = time.monotonic() - start
    ticks = {t.strip() for t in await page.locator(".js-plotly-plot .xtick text").all_text_contents()}
    return Round(
        session, "explore", seconds, tokens_problem(ticks, animal, colour) or await page_problem(page)
    )


async def browser_sources(page, url: str, session: int, round_: int, timeout_ms: int) -> Round:
    """Ask a question of the session's own on Sources, press Answer, wait until the run is over and the
    answer's export is offered, and check the export holds this question."""
    question = question_of(session, round_)
    start = time.monotonic()
    await page.goto(f"{url}/sources")
    await wait_for_run(page, timeout_ms)
    await page.get_by_label("Question", exact=True).fill(question)
    await page.evaluate(WATCH_RUN)
    await page.get_by_role("button", name="Answer", exact=True).click()
    await page.wait_for_function(ANSWER_SHOWN, timeout=timeout_ms, polling=200)
    seconds = time.monotonic() - start
    problem = await page_problem(page)
    if not problem:
        async with page.expect_download(timeout=timeout_ms) as started:
            await page.get_by_role("button", name="Download JSON").click()
        exported = json.loads(Path(await (await started.value).path()).read_text())
        problem = export_problem(exported, question)
    return Round(session, "sources", seconds, problem)


def export_problem(exported: dict[str, object], question: str) -> str:
    """'' when a Sources export holds ``question`` and its attention attribution, shown before any ablation;
    else what it holds instead."""
    found = exported.get("question")
    if found != question:
        return f"another question's result shown: {found!r}"
    scores = exported.get("scores")
    if not isinstance(scores, dict) or "attention" not in scores or exported.get("ablation") is not None:
        ablation = exported.get("ablation")
        return f"not the attention attribution first: scores {sorted(scores or {})}, ablation {ablation}"
    return ""


async def page_problem(page) -> str:
    """Text of any exception, error or warning on the page ('' when clean)."""
    found = await page.locator(PROBLEMS).all_text_contents()
    return "; ".join(t[:200] for t in found)


async def protocol_explore(client: ProtocolSession, session: int, round_: int, first: bool) -> Round:
    """Send a new prompt to Explore (URL, then the prompt box); check the session's own tokens came back."""
    prompt, animal, colour = prompt_of(session, round_)
    start = time.monotonic()
    if first:
        shown = await client.run("explore", urlencode({"prompt": prompt, "view": "Heads"}))
    else:
        box = client.last.widgets["text_area", "Prompt"]
        shown = await client.run("explore", states=[text_state(box, prompt)])
    seconds = time.monotonic() - start
    problem = "; ".join(shown.problems) or tokens_problem(shown.tick_texts(), animal, colour)
    return Round(session, "explore", seconds, problem)


async def protocol_sources(client: ProtocolSession, session: int, round_: int) -> Round:
    """Open Sources, submit a question of the session's own, and check its export carries that question."""
    question = question_of(session, round_)
    start = time.monotonic()
    form = await client.run("sources", "")
    states = [
        text_state(form.widgets["text_input", "Question"], question),
        trigger_state(form.widgets["button", "Answer"]),
    ]
    shown = await client.run("sources", states=states)
    seconds = time.monotonic() - start
    problem = "; ".join(shown.problems)
    if not problem and "Download JSON" not in shown.downloads:
        problem = "no answer shown"
    elif not problem:
        problem = export_problem(
            json.loads(await client.download(shown.downloads["Download JSON"])), question
        )
    return Round(session, "sources", seconds, problem)


async def protocol_session(url: str, session: Session, log: SessionLog) -> None:
    """A session over Streamlit's protocol: the page's JavaScript fetched once, as a browser does, then its rounds."""
    start = time.monotonic()
    async with ProtocolSession(url, timeout=session.plan.round_limit) as client:
        try:
            log.front_end_bytes = await client.load_front_end()
        except Exception as error:  # noqa: BLE001 - a session without its front end fails the run
            problem = f"front end not loaded: {type(error).__name__}: {str(error)[:300]}"
            log.rounds.append(Round(session.number, "front_end", time.monotonic() - start, problem))
            return
        await rounds(
            session, log,
            lambda r, first: protocol_explore(client, session.number, r, first),
            lambda r: protocol_sources(client, session.number, r),
        )  # fmt: skip


async def browser_session(browser, url: str, session: Session, log: SessionLog) -> None:  # noqa: ANN001
    """A session in its own Chromium context: its rounds, then any dialog or request off localhost."""
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    blocked: list[str] = []

    async def route(request_route) -> None:
        host = urlparse(request_route.request.url).hostname or ""
        if request_route.request.url.startswith(("data:", "blob:", "about:")) or host in {
            "127.0.0.1",
            "localhost",
        }:
            await request_route.continue_()
        else:
            blocked.append(request_route.request.url)
            await request_route.abort()

    await page.route("**/*", route)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    timeout_ms = int(session.plan.round_limit * 1000)
    context.set_default_timeout(timeout_ms)  # a busy machine loads the front end slowly: wait up to the limit
    context.set_default_navigation_timeout(timeout_ms)
    try:
        await rounds(
            session, log,
            lambda r, first: browser_explore(page, url, session.number, r, first, timeout_ms),
            lambda r: browser_sources(page, url, session.number, r, timeout_ms),
        )  # fmt: skip
    finally:
        if dialogs:
            log.rounds.append(Round(session.number, "dialog", 0.0, f"dialogs opened: {dialogs}"))
        if blocked:
            log.rounds.append(Round(session.number, "offline", 0.0, f"requests off localhost: {blocked[:5]}"))
        await context.close()


async def warm_up(url: str, plan: Plan) -> float:
    """Load the model and calibrate Sources once (not timed as a session: a class starts on a warm server)."""
    start = time.monotonic()
    log = SessionLog()
    warm = Plan(0.0, 2, plan.round_limit)
    await protocol_session(url, Session(len(ANIMALS) - 1, 0, lambda r: r < 2, warm, InFlight()), log)
    bad = [r for r in log.rounds if r.problem]
    if bad:
        raise RuntimeError(f"warm-up failed: {bad}")
    return time.monotonic() - start


async def run_sessions(
    client: str, url: str, sessions: int, plan: Plan, in_flight: InFlight
) -> list[SessionLog]:
    """The plan's sessions (:func:`benchmarks.schedule.planned_sessions`) over Streamlit's protocol or in Chromium."""
    planned = planned_sessions(plan, sessions, in_flight)
    logs = [SessionLog() for _ in planned]
    if client == "protocol":
        start = lambda s: protocol_session(url, s, logs[s.number])  # noqa: E731
        await on_schedule(planned, start, plan, in_flight.started)
        return logs
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        start = lambda s: browser_session(browser, url, s, logs[s.number])  # noqa: E731
        await on_schedule(planned, start, plan, in_flight.started)
        await browser.close()
    return logs


async def load_test(client: str, sessions: int, plan: Plan) -> dict[str, object]:
    """Start a server, warm it up, run the sessions and report latency, concurrency, CPU and memory."""
    servers: list[subprocess.Popen] = []
    with streamlit_server(started=servers) as url:
        pid = servers[0].pid
        warm_seconds = await warm_up(url, plan)
        memory_after_warm_up = rss_mb(pid)
        cpu_before = cpu_seconds(pid)
        in_flight = InFlight()
        logs = await run_sessions(client, url, sessions, plan, in_flight)
        concurrency = in_flight.report()
        wall = time.monotonic() - in_flight.started
        server_cpu = cpu_seconds(pid) - cpu_before
        peak = peak_mb(pid)
    rounds_ = [r for log in logs for r in log.rounds]
    first_explore = [next((r for r in log.rounds if r.page == "explore"), None) for log in logs]
    front_end = [log.front_end_bytes for log in logs if log.front_end_bytes]
    return {
        "client": client,
        "loop": "closed" if plan.arrivals_per_minute is None else "open",
        "sessions": len(logs),
        "arrivals_per_minute": plan.arrivals_per_minute,
        "seconds": plan.seconds,
        "round_limit_s": plan.round_limit,
        "wall_s": round(wall, 1),
        "warm_up_s": round(warm_seconds, 1),
        "explore": summary([r for r in rounds_ if r.page == "explore"]),
        "explore_first_open": summary([r for r in first_explore if r is not None]),
        "sources": summary([r for r in rounds_ if r.page == "sources"]),
        "in_flight": concurrency,
        "front_end_mb_per_session": round(float(np.median(front_end)) / 1e6, 2) if front_end else None,
        "rounds": len(rounds_),
        "server_cpu_s": round(server_cpu, 1),
        "server_cpu_s_per_round": round(server_cpu / max(len(rounds_), 1), 2),
        "problems": [asdict(r) for r in rounds_ if r.problem],
        "server_peak_rss_mb": round(peak, 1),
        "server_rss_after_warm_up_mb": round(memory_after_warm_up, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "limits": {k: v for k, v in os.environ.items() if k.startswith("ATTNVIZ_")},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30, help="concurrent sessions (closed loop)")
    parser.add_argument("--seconds", type=float, default=120, help="how long sessions keep sending requests")
    parser.add_argument(
        "--sources-every", type=int, default=3, help="every n-th round is on Sources (0: never)"
    )
    parser.add_argument(
        "--arrivals-per-minute", type=float, default=None,
        help="open loop: a new session on this schedule, one round each, whatever the server's state",
    )  # fmt: skip
    parser.add_argument(
        "--round-limit", type=float, default=600, help="seconds a round may take before it counts as failed"
    )
    parser.add_argument(
        "--client", choices=("protocol", "browser"), default="protocol",
        help="protocol: Streamlit's websocket protocol, loading the server as students' browsers on their "
        "own machines would; browser: Chromium tabs on this machine (also checks drawing and offline, "
        "but their rendering shares the server's cores)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("load.json"), help="JSON report")
    args = parser.parse_args(argv)
    plan = Plan(args.seconds, args.sources_every, args.round_limit, args.arrivals_per_minute)
    report = asyncio.run(load_test(args.client, args.sessions, plan))
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "problems"}, indent=1))
    print(
        f"{len(report['problems'])} problem(s)"
        + (f", first: {report['problems'][0]}" if report["problems"] else "")
    )
    return 1 if report["problems"] else 0  # a failed or timed-out round fails the run


if __name__ == "__main__":
    raise SystemExit(main())
