"""Classroom load test: N sessions at once against a real ``streamlit run`` on 127.0.0.1.

    python -m benchmarks.load --sessions 30 --seconds 120 --out load.json [--client browser]

Each session is a real Streamlit session: by default a client of Streamlit's own websocket protocol
(:mod:`benchmarks.protocol`: students' browsers on their own machines), or with ``--client browser``
its own Playwright context in one Chromium on this machine. Sessions start together and, until the
time is up (and at least until their first Sources round), alternate between Explore (a new prompt
of their own each round, typed into the prompt box after the first visit) and, every
``--sources-every`` rounds, Sources (a new question of their own, Answer pressed). Explore rounds
check the figures show the session's own tokens and nobody else's; Sources rounds check the answer
(over the protocol: that its export holds the session's question); every round checks for errors.
The JSON holds latency p50/p95/max per page and the server's peak memory (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode, urlparse

import numpy as np
from playwright.async_api import TimeoutError as PlaywrightTimeout

from benchmarks.browser import CHROMIUM_ARGS, IDLE, chromium_path, streamlit_server
from benchmarks.memory import peak_mb, rss_mb
from benchmarks.protocol import ProtocolSession, text_state, trigger_state

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


@dataclass
class Round:
    """One request of one session: which page, how long until the page was idle again, and what went wrong."""

    session: int
    page: str
    seconds: float
    problem: str = ""


@dataclass
class SessionLog:
    rounds: list[Round] = field(default_factory=list)


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
    """Ask a question of the session's own on Sources, press Answer, wait for the answer and its sources."""
    start = time.monotonic()
    await page.goto(f"{url}/sources")
    await wait_for_run(page, timeout_ms)
    await page.get_by_label("Question", exact=True).fill(question_of(session, round_))
    await page.get_by_role("button", name="Answer", exact=True).click()
    await page.get_by_role("heading", name="Sources", exact=True).last.wait_for(timeout=timeout_ms)
    await wait_for_run(page, timeout_ms)
    return Round(session, "sources", time.monotonic() - start, await page_problem(page))


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
        exported = json.loads(await client.download(shown.downloads["Download JSON"]))
        if exported.get("question") != question:
            problem = f"another question's result shown: {exported.get('question')!r}"
    return Round(session, "sources", seconds, problem)


async def rounds(
    session: int, deadline: float, sources_every: int, log: SessionLog, explore, sources
) -> None:
    """Explore rounds, with a Sources round every ``sources_every``-th, until ``deadline``."""
    round_, on_explore = 0, False
    # Until the time is up, and at least until the session's first Sources round (a slow machine still
    # checks both pages).
    while time.monotonic() < deadline or round_ < sources_every:
        try:
            if sources_every and round_ % sources_every == sources_every - 1:
                log.rounds.append(await sources(round_))
                on_explore = False
            else:
                log.rounds.append(await explore(round_, not on_explore))
                on_explore = True
        except Exception as error:  # noqa: BLE001 - a failed round is reported, the session goes on
            log.rounds.append(Round(session, "error", 0.0, f"{type(error).__name__}: {str(error)[:300]}"))
            on_explore = False
        round_ += 1


async def protocol_session(
    url: str, session: int, deadline: float, sources_every: int, log: SessionLog
) -> None:
    async with ProtocolSession(url) as client:
        await rounds(
            session, deadline, sources_every, log,
            lambda r, first: protocol_explore(client, session, r, first),
            lambda r: protocol_sources(client, session, r),
        )  # fmt: skip


async def browser_session(
    browser, url: str, session: int, deadline: float, sources_every: int, log: SessionLog
) -> None:
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
    timeout_ms = int(max(deadline - time.monotonic(), 0) * 1000) + 300_000
    context.set_default_timeout(timeout_ms)  # a busy machine loads the front end slowly: wait, don't fail
    context.set_default_navigation_timeout(timeout_ms)
    try:
        await rounds(
            session, deadline, sources_every, log,
            lambda r, first: browser_explore(page, url, session, r, first, timeout_ms),
            lambda r: browser_sources(page, url, session, r, timeout_ms),
        )  # fmt: skip
    finally:
        if dialogs:
            log.rounds.append(Round(session, "dialog", 0.0, f"dialogs opened: {dialogs}"))
        if blocked:
            log.rounds.append(Round(session, "offline", 0.0, f"requests off localhost: {blocked[:5]}"))
        await context.close()


def summary(seconds: list[float]) -> dict[str, float]:
    if not seconds:
        return {"n": 0}
    values = np.asarray(seconds)
    return {
        "n": int(values.size),
        "p50_s": round(float(np.percentile(values, 50)), 2),
        "p95_s": round(float(np.percentile(values, 95)), 2),
        "max_s": round(float(values.max()), 2),
    }


async def warm_up(url: str) -> float:
    """Load the model and calibrate Sources once (not timed as a session: a class starts on a warm server)."""
    start = time.monotonic()
    log = SessionLog()
    await protocol_session(url, len(ANIMALS) - 1, time.monotonic() + 1, 2, log)
    async with ProtocolSession(url) as client:
        log.rounds.append(await protocol_sources(client, 0, 0))
    bad = [r for r in log.rounds if r.problem]
    if bad:
        raise RuntimeError(f"warm-up failed: {bad}")
    return time.monotonic() - start


async def sessions_at_once(
    client: str, url: str, sessions: int, deadline: float, sources_every: int
) -> list[SessionLog]:
    """Run ``sessions`` sessions together until ``deadline``: protocol clients, or tabs in one Chromium."""
    logs = [SessionLog() for _ in range(sessions)]
    if client == "protocol":
        await asyncio.gather(
            *(protocol_session(url, i, deadline, sources_every, logs[i]) for i in range(sessions))
        )
        return logs
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        await asyncio.gather(
            *(browser_session(browser, url, i, deadline, sources_every, logs[i]) for i in range(sessions))
        )
        await browser.close()
    return logs


async def load_test(sessions: int, seconds: float, sources_every: int, client: str) -> dict[str, object]:
    servers: list[subprocess.Popen] = []
    with streamlit_server(started=servers) as url:
        pid = servers[0].pid
        warm_seconds = await warm_up(url)
        memory_after_warm_up = rss_mb(pid)
        cpu_before = cpu_seconds(pid)
        start = time.monotonic()
        logs = await sessions_at_once(client, url, sessions, start + seconds, sources_every)
        wall = time.monotonic() - start
        server_cpu = cpu_seconds(pid) - cpu_before
        peak = peak_mb(pid)
    rounds_ = [r for log in logs for r in log.rounds]
    first_explore = [log.rounds[0].seconds for log in logs if log.rounds and log.rounds[0].page == "explore"]
    return {
        "client": client,
        "sessions": sessions,
        "seconds": seconds,
        "wall_s": round(wall, 1),
        "warm_up_s": round(warm_seconds, 1),
        "explore": summary([r.seconds for r in rounds_ if r.page == "explore"]),
        "explore_first_open": summary(first_explore),
        "sources": summary([r.seconds for r in rounds_ if r.page == "sources"]),
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30, help="concurrent browser sessions")
    parser.add_argument("--seconds", type=float, default=120, help="how long sessions keep sending requests")
    parser.add_argument(
        "--sources-every", type=int, default=3, help="every n-th round is on Sources (0: never)"
    )
    parser.add_argument(
        "--client", choices=("protocol", "browser"), default="protocol",
        help="protocol: Streamlit's websocket protocol, loading the server as students' browsers on their "
        "own machines would; browser: Chromium tabs on this machine (also checks drawing and offline, "
        "but their rendering shares the server's cores)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("load.json"), help="JSON report")
    args = parser.parse_args(argv)
    report = asyncio.run(load_test(args.sessions, args.seconds, args.sources_every, args.client))
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "problems"}, indent=1))
    print(
        f"{len(report['problems'])} problem(s)"
        + (f", first: {report['problems'][0]}" if report["problems"] else "")
    )


if __name__ == "__main__":
    main()
