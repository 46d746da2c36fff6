"""Statistics of a citation study: per-passage and per-position shares with bootstrap intervals, paired A/B changes.

Everything here works on :class:`Row` records (one per question, order and passage), so it is
tested on planted data without a model. The unit of resampling is the question: a question's
orders are averaged first (they are not independent draws), then 95% intervals come from a
percentile bootstrap over questions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 2_000
LEVEL = 0.95


@dataclass(frozen=True)
class Row:
    """One passage in one run: question ``question`` (index), order ``order`` (index), the passage's id,
    its 0-based ``position`` in the prompt, its ``share`` of the attribution and whether it was the top source."""

    question: int
    order: int
    passage: str
    position: int
    share: float
    top1: bool


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` questions with its 95% bootstrap interval [low, high] (equal to the mean when n < 2)."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class PassageSummary:
    """A passage over the study: ``share`` (each question's mean over its orders, so over positions too),
    ``top1_rate`` (fraction of runs where it was the top source) and the questions it ``leads`` (highest
    order-averaged share)."""

    passage: str
    share: Interval
    top1_rate: float
    leads: tuple[int, ...]


@dataclass(frozen=True)
class PositionSummary:
    """Share of whichever passage sits at ``position`` (0-based), per question averaged over orders: the position-bias curve."""

    position: int
    share: Interval


@dataclass(frozen=True)
class PairedChange:
    """One passage before and after a rewrite, paired per question (each averaged over the same orders).

    ``shares_before``/``shares_after`` [questions] are its per-question shares; ``top1_before``/``top1_after``
    count the questions it leads.
    """

    passage: str
    questions: tuple[int, ...]
    before: Interval
    after: Interval
    delta: Interval
    shares_before: np.ndarray
    shares_after: np.ndarray
    top1_before: int
    top1_after: int

    @property
    def deltas(self) -> np.ndarray:
        """[questions] after - before."""
        return self.shares_after - self.shares_before


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> Interval:
    """Mean of ``values`` with a seeded percentile-bootstrap 95% interval (resampling the values)."""
    data = np.asarray(values, dtype=np.float64)
    if len(data) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(data.mean())
    if len(data) < 2:
        return Interval(mean, mean, mean, len(data))
    picks = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    means = data[picks].mean(axis=1)
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(mean, float(low), float(high), len(data))


def per_question(rows: Sequence[Row], key: str) -> dict[Hashable, dict[int, float]]:
    """{``key`` value (a passage id or a position): {question: mean share over that question's orders}}."""
    sums: dict[Hashable, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        sums[getattr(row, key)][row.question].append(row.share)
    return {k: {q: float(np.mean(v)) for q, v in by_q.items()} for k, by_q in sums.items()}


def leaders(rows: Sequence[Row]) -> dict[int, str]:
    """{question: the passage with the highest share averaged over that question's orders}."""
    by_passage = per_question(rows, "passage")
    best: dict[int, tuple[float, str]] = {}
    for passage, shares in by_passage.items():
        for question, share in shares.items():
            if question not in best or share > best[question][0]:
                best[question] = (share, str(passage))
    return {question: passage for question, (_, passage) in best.items()}


def passage_summaries(rows: Sequence[Row], seed: int = 0) -> tuple[PassageSummary, ...]:
    """Every passage's share interval, top-1 rate and the questions it leads, highest mean share first."""
    lead = leaders(rows)
    runs: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        runs[row.passage].append(row.top1)
    summaries = [
        PassageSummary(
            passage=str(passage),
            share=bootstrap_interval(list(shares.values()), seed=seed),
            top1_rate=float(np.mean(runs[str(passage)])),
            leads=tuple(sorted(q for q, p in lead.items() if p == passage)),
        )
        for passage, shares in per_question(rows, "passage").items()
    ]
    return tuple(sorted(summaries, key=lambda s: -s.share.mean))


def position_curve(rows: Sequence[Row], seed: int = 0) -> tuple[PositionSummary, ...]:
    """Share by position (first passage = 0) with intervals over questions, in position order."""
    by_position = per_question(rows, "position")
    return tuple(
        PositionSummary(int(position), bootstrap_interval(list(by_position[position].values()), seed=seed))
        for position in sorted(by_position)
    )


def paired_change(before: Sequence[Row], after: Sequence[Row], passage: str, seed: int = 0) -> PairedChange:
    """``passage``'s share before and after its rewrite, over the questions present in both, paired per question."""
    old = per_question(before, "passage").get(passage, {})
    new = per_question(after, "passage").get(passage, {})
    questions = tuple(sorted(set(old) & set(new)))
    old_values = np.array([old[q] for q in questions])
    new_values = np.array([new[q] for q in questions])
    lead_before, lead_after = leaders(before), leaders(after)
    return PairedChange(
        passage=passage,
        questions=questions,
        before=bootstrap_interval(old_values, seed=seed),
        after=bootstrap_interval(new_values, seed=seed),
        delta=bootstrap_interval(new_values - old_values, seed=seed),
        shares_before=old_values,
        shares_after=new_values,
        top1_before=sum(lead_before.get(q) == passage for q in questions),
        top1_after=sum(lead_after.get(q) == passage for q in questions),
    )


def describe_change(change: PairedChange) -> str:
    """The paired result in one line: "share 0.21 → 0.34 (+0.13, 95% CI 0.08 to 0.18) over 24 questions; top-1 in 5 → 11"."""
    d = change.delta
    return (
        f"share {change.before.mean:.2f} → {change.after.mean:.2f} ({d.mean:+.2f}, 95% CI {d.low:+.2f} to "
        f"{d.high:+.2f}) over {d.n} questions; top-1 in {change.top1_before} → {change.top1_after}"
    )
