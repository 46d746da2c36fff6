"""Classroom load test: N browser sessions at once against a real ``streamlit run`` on 127.0.0.1.

    python -m benchmarks.load --sessions 30 --seconds 120 --out load.json

Every session is its own Playwright context (cookies, websocket, Streamlit session) in one
Chromium. Sessions start together and, until the time is up, alternate between Explore (a new
prompt of their own each round, typed into the prompt box after the first visit) and, every
``--sources-every`` rounds, Sources (a question of their own). Each Explore round checks the page
shows the session's own tokens and nobody else's; every round checks for errors and tracebacks.
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
from urllib.parse import quote, urlparse

import numpy as np

from playwright.async_api import TimeoutError as PlaywrightTimeout

from benchmarks.browser import CHROMIUM_ARGS, IDLE, chromium_path, streamlit_server

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


def memory_kb(pid: int, field_name: str = "VmHWM") -> int:
    """A /proc memory figure of a process in kB (VmHWM: the peak resident set)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (contention-independent cost)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def wait_for_run(page, timeout_ms: int) -> None:
    """Wait until Streamlit has started and finished a script run."""
    await page.wait_for_timeout(300)
    await page.wait_for_selector(IDLE, timeout=timeout_ms)


async def explore_round(page, url: str, session: int, round_: int, first: bool, timeout_ms: int) -> Round:
    """Show a new prompt on Explore and check the grid and the session's own tokens are drawn."""
    prompt, animal, colour = prompt_of(session, round_)
    start = time.monotonic()
    if first:
        await page.goto(f"{url}/explore?prompt={quote(prompt)}&view=Heads")
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
    others = sorted(a for a in ANIMALS if a in ticks and a != animal)
    problem = ""
    if animal not in ticks or colour not in ticks:
        problem = f"own tokens missing ({animal!r}, {colour!r})"
    elif others:
        problem = f"another session's tokens shown: {others}"
    return Round(session, "explore", seconds, problem or await page_problem(page))


async def sources_round(page, url: str, session: int, round_: int, timeout_ms: int) -> Round:
    """Ask a question of the session's own on Sources and wait for the answer and its attribution."""
    _, animal, _ = prompt_of(session, round_)
    start = time.monotonic()
    await page.goto(f"{url}/sources")
    await wait_for_run(page, timeout_ms)
    box = page.get_by_label("Question", exact=True)
    await box.fill(f"Which passage would a {animal} in room {session} read first?")
    await box.press("Enter")
    await wait_for_run(page, timeout_ms)
    await page.get_by_text("Answer", exact=True).first.wait_for(timeout=timeout_ms)
    return Round(session, "sources", time.monotonic() - start, await page_problem(page))


async def page_problem(page) -> str:
    """Text of any exception, error or warning on the page ('' when clean)."""
    found = await page.locator(PROBLEMS).all_text_contents()
    return "; ".join(t[:200] for t in found)


async def run_session(
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
    round_, on_explore = 0, False
    timeout_ms = int(max(deadline - time.monotonic(), 0) * 1000) + 300_000
    context.set_default_timeout(timeout_ms)  # a busy machine loads the front end slowly: wait, don't fail
    context.set_default_navigation_timeout(timeout_ms)
    try:
        while time.monotonic() < deadline:
            try:
                if sources_every and round_ % sources_every == sources_every - 1:
                    log.rounds.append(await sources_round(page, url, session, round_, timeout_ms))
                    on_explore = False
                else:
                    log.rounds.append(
                        await explore_round(page, url, session, round_, not on_explore, timeout_ms)
                    )
                    on_explore = True
            except Exception as error:  # noqa: BLE001 - a failed round is reported, the session goes on
                log.rounds.append(Round(session, "error", 0.0, f"{type(error).__name__}: {str(error)[:300]}"))
                on_explore = False
            round_ += 1
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


async def warm_up(browser, url: str) -> float:
    """Load the model and calibrate Sources once (not timed as a session: a class starts on a warm server)."""
    start = time.monotonic()
    log = SessionLog()
    await run_session(browser, url, len(ANIMALS) - 1, time.monotonic() + 1, 2, log)
    context = await browser.new_context()
    context.set_default_timeout(900_000)
    context.set_default_navigation_timeout(900_000)
    page = await context.new_page()
    log.rounds.append(await sources_round(page, url, 0, 0, 900_000))
    await context.close()
    bad = [r for r in log.rounds if r.problem]
    if bad:
        raise RuntimeError(f"warm-up failed: {bad}")
    return time.monotonic() - start


async def load_test(sessions: int, seconds: float, sources_every: int) -> dict[str, object]:
    from playwright.async_api import async_playwright

    servers: list[subprocess.Popen] = []
    with streamlit_server(started=servers) as url:
        pid = servers[0].pid
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
            warm_seconds = await warm_up(browser, url)
            memory_after_warm_up = memory_kb(pid, "VmRSS")
            logs = [SessionLog() for _ in range(sessions)]
            cpu_before = cpu_seconds(pid)
            deadline = time.monotonic() + seconds
            start = time.monotonic()
            await asyncio.gather(
                *(run_session(browser, url, i, deadline, sources_every, logs[i]) for i in range(sessions))
            )
            wall = time.monotonic() - start
            server_cpu = cpu_seconds(pid) - cpu_before
            await browser.close()
        peak_kb = memory_kb(pid)
    rounds = [r for log in logs for r in log.rounds]
    first_explore = [log.rounds[0].seconds for log in logs if log.rounds and log.rounds[0].page == "explore"]
    return {
        "sessions": sessions,
        "seconds": seconds,
        "wall_s": round(wall, 1),
        "warm_up_s": round(warm_seconds, 1),
        "explore": summary([r.seconds for r in rounds if r.page == "explore"]),
        "explore_first_open": summary(first_explore),
        "sources": summary([r.seconds for r in rounds if r.page == "sources"]),
        "rounds": len(rounds),
        "server_cpu_s": round(server_cpu, 1),
        "server_cpu_s_per_round": round(server_cpu / max(len(rounds), 1), 2),
        "problems": [asdict(r) for r in rounds if r.problem],
        "server_peak_rss_mb": round(peak_kb / 1024, 1),
        "server_rss_after_warm_up_mb": round(memory_after_warm_up / 1024, 1),
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
    parser.add_argument("--out", type=Path, default=Path("load.json"), help="JSON report")
    args = parser.parse_args(argv)
    report = asyncio.run(load_test(args.sessions, args.seconds, args.sources_every))
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps({k: v for k, v in report.items() if k != "problems"}, indent=1))
    print(
        f"{len(report['problems'])} problem(s)"
        + (f", first: {report['problems'][0]}" if report["problems"] else "")
    )


if __name__ == "__main__":
    main()
