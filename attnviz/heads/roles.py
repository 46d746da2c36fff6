"""Head roles from corpus statistics, with stated thresholds, and an ablation check of each role.

A head holds a role when its mean statistic over the corpus passes the role's threshold
(retrieval heads come from the Sources calibration instead). A role's check ablates its
strongest heads (at most :data:`TOP_K`) and, as a control, as many random heads of the same
layers that do not hold the role, on the same cases; the effect is ablated minus control per
case with a 95% bootstrap interval, so "no measurable effect" is an interval holding 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from attnviz.heads.ablation import NoPredictionError, token_logprobs
from attnviz.heads.corpus import CorpusPrompt
from attnviz.heads.stats import bootstrap
from attnviz.hooks import Site
from attnviz.models.loading import LoadedModel

Head = tuple[int, int]
TOP_K = 3
CHECK_CASES = 12
METRICS = {
    "repeated": "loss on the second half of repeated random tokens (nats/token)",
    "natural": "loss on natural text (nats/token)",
    "retrieval": "answer log-probability on synthetic retrieval cases (nats)",
}


@dataclass(frozen=True)
class Role:
    """A kind of head: held when ``statistic`` is at least (``above``) or at most ``threshold``.

    ``tasks`` are the ablation metrics that check it (keys of :data:`METRICS`).
    """

    name: str
    statistic: str | None
    threshold: float | None
    above: bool
    definition: str
    tasks: tuple[str, ...]

    def rule(self) -> str:
        """The threshold in words, e.g. ``previous_token ≥ 0.4``."""
        if self.statistic is None:
            return "chosen by the Sources calibration"
        return f"{self.statistic} {'≥' if self.above else '≤'} {self.threshold:g}"


ROLES = (
    Role("previous-token", "previous_token", 0.4, True,
         "Reads the token just before the current one.", ("repeated", "natural")),
    Role("induction", "induction", 0.3, True,
         "On a repeat, reads the token that followed the earlier occurrence (copies a pattern).",
         ("repeated", "natural")),
    Role("duplicate-token", "duplicate", 0.3, True,
         "Reads earlier occurrences of the current token.", ("natural",)),
    Role("first-token sink", "first_token", 0.5, True,
         "Parks most of its attention on the first token (a 'no-op' default).", ("natural",)),
    Role("local", "distance", 3.0, False, "Reads within a few tokens of the current one.", ("natural",)),
    Role("broad", "breadth", 0.7, True, "Spreads attention nearly evenly over what it may see.", ("natural",)),
    Role("retrieval", None, None, True,
         "Its attention lands on the passage holding the answer (heads found by the Sources calibration).",
         ("retrieval", "natural")),
)  # fmt: skip


@dataclass(frozen=True)
class RetrievalInputs:
    """The calibrated retrieval heads (best first) and synthetic cases as (prompt ids, answer ids)."""

    heads: tuple[Head, ...]
    cases: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps([self.heads, self.cases]).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class MetricCheck:
    """One metric on ``cases`` cases: means of intact, ablated and control runs, and the effect's interval.

    The effect is ablated − control per case; ``effect_low``/``effect_high`` its 95% bootstrap interval.
    """

    metric: str
    baseline: float
    ablated: float
    control: float
    effect_low: float
    effect_high: float
    cases: int

    @property
    def measurable(self) -> bool:
        """Whether the interval excludes 0 (otherwise: no measurable effect)."""
        return not self.effect_low <= 0.0 <= self.effect_high


@dataclass(frozen=True)
class RoleCheck:
    """The ablation check of one role: ``heads`` ablated, one :class:`MetricCheck` per metric, or why none ran."""

    heads: tuple[Head, ...]
    metrics: tuple[MetricCheck, ...]
    note: str = ""

    def export(self) -> dict[str, object]:
        """JSON fields: ``metric`` and each number as lists, one entry per metric."""
        fields = ("metric", "baseline", "ablated", "control", "effect_low", "effect_high")
        return {name: [_rounded(getattr(m, name)) for m in self.metrics] for name in fields}

    @staticmethod
    def empty() -> dict[str, object]:
        return RoleCheck((), ()).export()

    @staticmethod
    def from_dict(data: dict) -> RoleCheck:
        return RoleCheck(
            tuple((int(a), int(b)) for a, b in data["heads"]),
            tuple(MetricCheck(**m) for m in data["metrics"]),
            data["note"],
        )


def _rounded(value: object) -> object:
    return round(value, 6) if isinstance(value, float) else value


def assign_roles(
    mean: np.ndarray, names: Sequence[str], retrieval: Sequence[Head] = ()
) -> dict[str, tuple[Head, ...]]:
    """Each role's heads, strongest first, from mean statistics [layers, heads, S] (S = ``names``)."""
    found: dict[str, tuple[Head, ...]] = {}
    for role in ROLES:
        if role.statistic is None:
            found[role.name] = tuple(h for h in retrieval if h[0] < mean.shape[0] and h[1] < mean.shape[1])
            continue
        values = mean[..., list(names).index(role.statistic)]
        holds = values >= role.threshold if role.above else values <= role.threshold
        order = np.argsort(-values if role.above else values, axis=None, kind="stable")
        found[role.name] = tuple(
            (int(i // values.shape[1]), int(i % values.shape[1])) for i in order if holds.flat[i]
        )
    return found


def control_heads(
    heads: Sequence[Head], avoid: set[Head], n_heads: int, rng: np.random.Generator
) -> tuple[Head, ...]:
    """For each head, a random other head of its layer outside ``avoid`` (else any other head of the layer)."""
    chosen: list[Head] = []
    for layer, head in heads:
        pool = [h for h in range(n_heads) if (layer, h) not in avoid and (layer, h) not in chosen]
        pool = pool or [h for h in range(n_heads) if h != head and (layer, h) not in chosen]
        chosen.append((layer, int(rng.choice(pool))))
    return tuple(chosen)


@dataclass(frozen=True)
class _Case:
    """A scored sequence: ``ids`` and the slice of its [n − 1] token log-probs the metric reads."""

    ids: tuple[int, ...]
    scored: slice
    loss: bool  # True: mean negative log-prob (loss); False: summed log-prob (answer)

    def value(self, logprobs: np.ndarray) -> float:
        chosen = logprobs[self.scored]
        return float(-chosen.mean() if self.loss else chosen.sum())


def _cases(prompts: Sequence[CorpusPrompt], retrieval: RetrievalInputs | None) -> dict[str, list[_Case]]:
    """The cases of each metric: the first CHECK_CASES prompts of the fitting kind."""
    natural = [_Case(p.ids, slice(None), True) for p in prompts if p.kind == "natural"]
    repeated = [_Case(p.ids, slice(p.start + p.period, None), True) for p in prompts if p.kind == "repeated"]
    answers = [
        _Case((*prompt, *answer), slice(len(prompt) - 1, None), False) for prompt, answer in retrieval.cases
    ] if retrieval is not None else []  # fmt: skip
    return {
        "natural": natural[:CHECK_CASES],
        "repeated": repeated[:CHECK_CASES],
        "retrieval": answers[:CHECK_CASES],
    }


def _ablation(loaded: LoadedModel, heads: Sequence[Head]) -> dict[Site, tuple[int, ...]]:
    sites: dict[Site, tuple[int, ...]] = {}
    for layer, head in heads:
        site = Site(loaded.main_stack, layer)
        sites[site] = (*sites.get(site, ()), head)
    return sites


def check_roles(
    loaded: LoadedModel,
    roles: dict[str, tuple[Head, ...]],
    prompts: Sequence[CorpusPrompt],
    retrieval: RetrievalInputs | None,
    progress: Callable[[float, str], None],
    seed: int = 0,
) -> dict[str, RoleCheck | None]:
    """Ablate each role's top heads and random same-layer heads on each of its metrics' cases (None: no heads)."""
    cases = _cases(prompts, retrieval)
    plans = {role.name: [t for t in role.tasks if cases[t]] for role in ROLES if roles.get(role.name)}
    tasks_used = {t for tasks in plans.values() for t in tasks}
    total = sum(len(cases[t]) for t in tasks_used) + sum(
        2 * len(cases[t]) for ts in plans.values() for t in ts
    )
    done = 0
    baselines: dict[str, list[float]] = {}
    try:
        for task in sorted(tasks_used):
            progress(done / max(total, 1), f"Ablation checks: intact model, {METRICS[task]}")
            baselines[task] = [case.value(token_logprobs(loaded, case.ids)) for case in cases[task]]
            done += len(cases[task])
    except NoPredictionError as problem:
        return {role.name: RoleCheck(roles.get(role.name, ())[:TOP_K], (), str(problem)) for role in ROLES}
    checks: dict[str, RoleCheck | None] = {}
    for number, role in enumerate(ROLES):
        held = roles.get(role.name, ())
        if not held:
            checks[role.name] = None
            continue
        top = held[:TOP_K]
        rng = np.random.default_rng(seed + number)
        metrics = []
        for task in plans[role.name]:
            progress(done / max(total, 1), f"Ablation checks: {role.name} heads, {METRICS[task]}")
            ablated, control = [], []
            for case in cases[task]:
                ablated.append(case.value(token_logprobs(loaded, case.ids, _ablation(loaded, top))))
                random_heads = control_heads(top, set(held), loaded.n_heads, rng)
                control.append(case.value(token_logprobs(loaded, case.ids, _ablation(loaded, random_heads))))
                done += 2
            metrics.append(_metric(task, baselines[task], ablated, control, seed + number))
        checks[role.name] = RoleCheck(top, tuple(metrics), "" if metrics else "no cases for its metrics")
    progress(1.0, "Ablation checks done")
    return checks


def _metric(
    task: str, baseline: list[float], ablated: list[float], control: list[float], seed: int
) -> MetricCheck:
    effects = np.asarray(ablated) - np.asarray(control)
    _, low, high = bootstrap(effects, seed=seed)
    return MetricCheck(
        METRICS[task], float(np.mean(baseline)), float(np.mean(ablated)), float(np.mean(control)),
        float(low), float(high), len(effects),
    )  # fmt: skip
