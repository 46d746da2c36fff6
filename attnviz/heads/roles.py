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
# One ablation pass takes at most this many tokens and this many bytes of float32 logits (rows × scored × vocab).
PASS_TOKENS = 2048
PASS_LOGIT_BYTES = 128 * 2**20
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
    """A scored sequence: ``ids``, read from the prediction of token ``first + 1`` on."""

    ids: tuple[int, ...]
    first: int
    loss: bool  # True: mean negative log-prob (loss); False: summed log-prob (answer)

    def value(self, scored: np.ndarray) -> float:
        """The metric from the log-probs of tokens ``first + 1 ..`` (what :func:`token_logprobs` returns)."""
        return float(-scored.mean() if self.loss else scored.sum())


@dataclass(frozen=True)
class _Run:
    """One row of an ablation pass: a case of ``task`` with ``heads`` switched off (none: the intact model)."""

    task: str
    case: _Case
    heads: tuple[Head, ...]


def _cases(prompts: Sequence[CorpusPrompt], retrieval: RetrievalInputs | None) -> dict[str, list[_Case]]:
    """The cases of each metric: the first CHECK_CASES prompts of the fitting kind."""
    natural = [_Case(p.ids, 0, True) for p in prompts if p.kind == "natural"]
    repeated = [_Case(p.ids, p.start + p.period, True) for p in prompts if p.kind == "repeated"]
    answers = [
        _Case((*prompt, *answer), len(prompt) - 1, False) for prompt, answer in retrieval.cases
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


def _rows_per_pass(loaded: LoadedModel, n_tokens: int, kept: int) -> int:
    """How many rows of ``n_tokens`` tokens, ``kept`` of them scored, one ablation pass takes."""
    by_logits = PASS_LOGIT_BYTES // (kept * loaded.info.vocab_size * 4)
    return max(1, min(PASS_TOKENS // n_tokens, by_logits))


def _run_values(
    loaded: LoadedModel, runs: Sequence[_Run], progress: Callable[[float, str], None]
) -> list[float]:
    """Each run's metric, from passes that batch runs of one task, length and scored span (any ablations)."""
    groups: dict[tuple[str, int, int], list[int]] = {}
    for index, run in enumerate(runs):
        groups.setdefault((run.task, len(run.case.ids), run.case.first), []).append(index)
    passes = [
        (task, first, members[i : i + step])
        for (task, n_tokens, first), members in groups.items()
        for step in [_rows_per_pass(loaded, n_tokens, n_tokens - first)]
        for i in range(0, len(members), step)
    ]
    values = [0.0] * len(runs)
    done = 0
    for number, (task, first, members) in enumerate(passes, start=1):
        progress(done / len(runs), f"Ablation checks: pass {number} of {len(passes)}, {METRICS[task]}")
        chosen = [runs[i] for i in members]
        scored = token_logprobs(
            loaded, [r.case.ids for r in chosen], [_ablation(loaded, r.heads) for r in chosen], first
        )
        for index, run, row in zip(members, chosen, scored, strict=True):
            values[index] = run.case.value(row)
        done += len(members)
    return values


def check_roles(
    loaded: LoadedModel,
    roles: dict[str, tuple[Head, ...]],
    prompts: Sequence[CorpusPrompt],
    retrieval: RetrievalInputs | None,
    progress: Callable[[float, str], None],
    seed: int = 0,
) -> dict[str, RoleCheck | None]:
    """Ablate each role's top heads and random same-layer heads on each of its metrics' cases (None: no heads).

    Every run (intact, ablated, control; any role) is planned first and then batched (:func:`_run_values`).
    """
    cases = _cases(prompts, retrieval)
    plans = {role.name: [t for t in role.tasks if cases[t]] for role in ROLES if roles.get(role.name)}
    tasks_used = sorted({t for tasks in plans.values() for t in tasks})
    runs = [_Run(task, case, ()) for task in tasks_used for case in cases[task]]
    baselines = {task: [i for i, run in enumerate(runs) if run.task == task] for task in tasks_used}
    # Each role's (task, ablated runs, control runs).
    planned: dict[str, list[tuple[str, list[int], list[int]]]] = {}
    for number, role in enumerate(ROLES):
        held = roles.get(role.name, ())
        if not held:
            continue
        top = held[:TOP_K]
        rng = np.random.default_rng(seed + number)
        planned[role.name] = []
        for task in plans[role.name]:
            ablated, control = [], []
            for case in cases[task]:
                ablated.append(len(runs))
                runs.append(_Run(task, case, top))
                control.append(len(runs))
                runs.append(_Run(task, case, control_heads(top, set(held), loaded.n_heads, rng)))
            planned[role.name].append((task, ablated, control))
    try:
        values = _run_values(loaded, runs, progress)
    except NoPredictionError as problem:
        return {role.name: RoleCheck(roles.get(role.name, ())[:TOP_K], (), str(problem)) for role in ROLES}
    checks: dict[str, RoleCheck | None] = {}
    for number, role in enumerate(ROLES):
        if role.name not in planned:
            checks[role.name] = None
            continue
        metrics = tuple(
            _metric(task, [values[i] for i in baselines[task]], [values[i] for i in ablated],
                    [values[i] for i in control], seed + number)
            for task, ablated, control in planned[role.name]
        )  # fmt: skip
        note = "" if metrics else "no cases for its metrics"
        checks[role.name] = RoleCheck(roles[role.name][:TOP_K], metrics, note)
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
