"""When a load test's rounds are sent and how they are counted.

Closed loop: each session sends its next round when the last one ends. Open loop: sessions arrive on
a fixed schedule, however busy the server is. Every round runs within a time limit; a round that fails
or runs out of time is kept with the seconds it took, so it counts in the percentiles, and with its
problem, so it fails the run. ``InFlight`` measures the concurrency a run reached.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Round:
    """One request of one session: which page, how long until the page was idle again, and what went wrong."""

    session: int
    page: str
    seconds: float
    problem: str = ""


@dataclass
class SessionLog:
    """A session's rounds, in order, and the bytes of front end it fetched (protocol sessions)."""

    rounds: list[Round] = field(default_factory=list)
    front_end_bytes: int = 0


@dataclass(frozen=True)
class Plan:
    """What the sessions do: for how long, how often on Sources, each round's time limit, and the loop:
    closed (sessions send their next round when the last ends) or open (``arrivals_per_minute``)."""

    seconds: float
    sources_every: int
    round_limit: float
    arrivals_per_minute: float | None = None

    def page(self, round_: int) -> str:
        """The page a round is on: Sources every ``sources_every``-th round, else Explore."""
        every = self.sources_every
        return "sources" if every and round_ % every == every - 1 else "explore"


@dataclass
class InFlight:
    """Rounds under way, over time (``with in_flight:`` around each round): time-weighted mean and max."""

    now: int = 0
    most: int = 0
    area: float = 0.0  # rounds in flight × seconds, up to ``since``
    started: float = field(default_factory=time.monotonic)
    since: float = field(default_factory=time.monotonic)

    def _change(self, by: int) -> None:
        moment = time.monotonic()
        self.area += self.now * (moment - self.since)
        self.since, self.now = moment, self.now + by
        self.most = max(self.most, self.now)

    def __enter__(self) -> InFlight:
        self._change(1)
        return self

    def __exit__(self, *_: object) -> None:
        self._change(-1)

    def report(self) -> dict[str, float]:
        """Mean rounds in flight since ``started`` (time-weighted) and the most at once."""
        self._change(0)
        return {"mean": round(self.area / max(self.since - self.started, 1e-9), 2), "max": self.most}


Explore = Callable[[int, bool], Awaitable[Round]]  # (round, first visit of the page) -> Round
Sources = Callable[[int], Awaitable[Round]]
Sends = Callable[[int], bool]  # whether a session sends this round (numbered from its first)


@dataclass(frozen=True)
class Session:
    """One session's place in the run: its number, its first round, which rounds it sends, and the plan."""

    number: int
    first_round: int
    sends: Sends
    plan: Plan
    in_flight: InFlight


async def rounds(session: Session, log: SessionLog, explore: Explore, sources: Sources) -> None:
    """The session's rounds on Explore and Sources (``Plan.page``), each within the plan's round limit.

    A round that raises or runs out of time is logged on its page with the seconds it took (about the
    limit, when it ran out), so it counts in the percentiles, and with its problem, so it fails the run.
    """
    round_, on_explore = session.first_round, False
    while session.sends(round_):
        page, start = session.plan.page(round_), time.monotonic()
        try:
            with session.in_flight:
                async with asyncio.timeout(session.plan.round_limit):
                    done = await (sources(round_) if page == "sources" else explore(round_, not on_explore))
        except TimeoutError:
            done = Round(session.number, page, time.monotonic() - start, "timed out")
        except Exception as error:  # noqa: BLE001 - a failed round is reported, the session goes on
            problem = f"{type(error).__name__}: {str(error)[:300]}"
            done = Round(session.number, page, time.monotonic() - start, problem)
        log.rounds.append(done)
        on_explore = page == "explore" and not done.problem
        round_ += 1


def summary(found: list[Round]) -> dict[str, float]:
    """Latency of rounds, failed ones included (with the time they took): n, failed, p50, p95, max."""
    if not found:
        return {"n": 0, "failed": 0}
    values = np.asarray([r.seconds for r in found])
    return {
        "n": int(values.size),
        "failed": sum(bool(r.problem) for r in found),
        "p50_s": round(float(np.percentile(values, 50)), 2),
        "p95_s": round(float(np.percentile(values, 95)), 2),
        "max_s": round(float(values.max()), 2),
    }


async def on_schedule(
    planned: list[Session], start: Callable[[Session], Awaitable[None]], plan: Plan, began: float
) -> None:
    """Start every session (all at once in a closed loop; one per interval in an open loop, however many
    are still running) and wait for all of them to end."""
    interval = 0.0 if plan.arrivals_per_minute is None else 60 / plan.arrivals_per_minute
    running = []
    for session in planned:
        await asyncio.sleep(max(0.0, began + session.number * interval - time.monotonic()))
        running.append(asyncio.create_task(start(session)))
    await asyncio.gather(*running)


def planned_sessions(plan: Plan, sessions: int, in_flight: InFlight) -> list[Session]:
    """Closed loop: ``sessions`` sessions, all sending rounds until the time is up (and at least until their
    first Sources round, so a slow machine still checks both pages). Open loop: one session per
    60 / ``plan.arrivals_per_minute`` s until then, each sending one round (numbered by its arrival)."""
    deadline = in_flight.started + plan.seconds
    if plan.arrivals_per_minute is None:
        sends = lambda r: time.monotonic() < deadline or r < plan.sources_every  # noqa: E731
        return [Session(i, 0, sends, plan, in_flight) for i in range(sessions)]
    arrivals = math.ceil(round(plan.seconds * plan.arrivals_per_minute / 60, 6))  # 0.3 s × 10/s: 3, not 4
    return [Session(i, i, lambda r, i=i: r == i, plan, in_flight) for i in range(arrivals)]
