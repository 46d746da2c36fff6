"""Citation study: which passages a model's answers are drawn from over many questions, and where position matters.

Each question is attributed (:func:`attnviz.sources.attribution.attribute`, calibrated retrieval
heads or ablation) with its passages in K orders: seeded random permutations or evenly spaced
rotations. Averaging a passage over its orders separates content from position; averaging a
position over questions gives the position-bias curve (:mod:`attnviz.sources.study_stats`).

A given answer is teacher-forced in every order. Without one, the model answers once, in the
question's first order, and that answer is teacher-forced in the other orders: every order then
scores the same answer, so a change across orders is the order's doing, not a different answer.
With the attention method a question's orders are scored together, in batched passes that record
only the retrieval heads' layers (:func:`attnviz.sources.attention.retrieval_batch`); ablation runs
each order alone.
An A/B rewrite (:func:`with_passage`, :func:`compare`) runs the same questions in the same orders.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from attnviz.models.loading import LoadedModel
from attnviz.sources.answers import generate_answers
from attnviz.sources.attention import Head, retrieval_batch
from attnviz.sources.attribution import (
    DEFAULT_MAX_NEW_TOKENS,
    answer_text,
    attribute,
    passage_scores,
    ranking,
    tokenize_answer,
)
from attnviz.sources.calibration import calibration
from attnviz.sources.passages import Progress, build_prompt
from attnviz.sources.study_stats import (
    Interval,
    PairedChange,
    PassageSummary,
    PositionSummary,
    Row,
    bootstrap_interval,
    paired_change,
    passage_summaries,
    position_curve,
)
from attnviz.tracing.inputs import PromptError

STUDY_METHODS = ("attention", "ablation")
ORDER_KINDS = ("random", "rotation")
MEASURES = {
    "attention": "attention share of the calibrated retrieval heads (sums to 1 over a question's passages)",
    "ablation": "log-probability (nats) the answer loses when the passage is removed (leave-one-out)",
}


@dataclass(frozen=True)
class StudyCase:
    """A question, its optional given answer (teacher-forced) and the ids of its passages (in their given order)."""

    question: str
    answer: str | None
    passage_ids: tuple[str, ...]


@dataclass(frozen=True)
class Study:
    """Questions over passages: ``passages`` are (id, text) pairs, shared by the cases that name them."""

    passages: tuple[tuple[str, str], ...]
    cases: tuple[StudyCase, ...]

    def text(self, passage_id: str) -> str:
        return dict(self.passages)[passage_id]


@dataclass(frozen=True)
class Run:
    """One question in one order: passage ids as placed in the prompt, ``scores`` [passages] in that order,
    the answer, where it came from (``"given"`` or ``"generated"``) and its total log-probability."""

    question: int
    order: int
    passage_ids: tuple[str, ...]
    scores: np.ndarray
    answer: str
    answer_origin: str
    logprob: float

    def rows(self) -> list[Row]:
        top = int(ranking(self.scores)[0])
        return [
            Row(self.question, self.order, passage, position, float(self.scores[position]), position == top)
            for position, passage in enumerate(self.passage_ids)
        ]


@dataclass(frozen=True)
class StudyResult:
    """Every run of a study and its summaries; ``complete`` is False when it was stopped (whole questions kept)."""

    study: Study
    method: str
    n_orders: int
    order_kind: str
    seed: int
    runs: tuple[Run, ...]
    passages: tuple[PassageSummary, ...]
    positions: tuple[PositionSummary, ...]
    seconds: float
    complete: bool = True

    @property
    def rows(self) -> list[Row]:
        return [row for run in self.runs for row in run.rows()]

    def answers(self) -> dict[int, str]:
        """{question: answer} as written in the question's first order."""
        return {run.question: run.answer for run in self.runs if run.order == 0}


@dataclass(frozen=True)
class Comparison:
    """A/B rewrite of one passage: its paired share change, the generated answers that changed
    (question, before, after) and the given answers' log-probability change (per question, mean over orders)."""

    share: PairedChange
    answer_changes: tuple[tuple[int, str, str], ...]
    logprob_before: Interval
    logprob_after: Interval
    logprob_delta: Interval


def orders(n_passages: int, k: int, kind: str = "random", seed: int = 0) -> np.ndarray:
    """[k, n_passages] passage orders: seeded random permutations, or rotations spaced evenly around the list.

    Rotations give every passage a different position in each order (k is capped at n_passages for them).
    """
    if kind not in ORDER_KINDS:
        raise PromptError(f"Unknown order kind {kind!r}; choose from {', '.join(ORDER_KINDS)}.")
    if k < 1:
        raise PromptError("Run each question in at least one order.")
    if kind == "rotation":
        k = min(k, n_passages)
        return np.stack([np.roll(np.arange(n_passages), -round(i * n_passages / k)) for i in range(k)])
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n_passages) for _ in range(k)])


def with_passage(study: Study, passage_id: str, text: str) -> Study:
    """The same study with passage ``passage_id`` rewritten as ``text`` (the B of an A/B comparison)."""
    if passage_id not in dict(study.passages):
        raise PromptError(
            f"No passage has the id {passage_id!r}; ids: {', '.join(i for i, _ in study.passages)}."
        )
    if not text.strip():
        raise PromptError("The rewritten passage is empty.")
    edited = tuple((i, text.strip() if i == passage_id else t) for i, t in study.passages)
    return replace(study, passages=edited)


Say = Callable[[int, str], None]  # (runs of this question done, what is happening) for one question


def _attention_runs(
    loaded: LoadedModel,
    study: Study,
    number: int,
    placed: Sequence[tuple[str, ...]],
    heads: Sequence[Head],
    max_new_tokens: int,
    say: Say,
) -> list[Run]:
    """Question ``number`` in every order of ``placed``: the answer (given, or generated once in the first
    order) teacher-forced after each order, all orders scored in batched passes (:func:`retrieval_batch`)."""
    case = study.cases[number]
    given = None if case.answer is None else tokenize_answer(loaded, case.answer)
    reserve = max_new_tokens if given is None else len(given)
    prompts = [
        build_prompt(loaded, case.question, [study.text(i) for i in ids], reserve=reserve) for ids in placed
    ]
    if any(len(prompt.passages) != len(ids) for prompt, ids in zip(prompts, placed, strict=True)):
        raise PromptError(f"Question {number + 1}: a passage is empty, so positions would not line up.")
    if given is None:
        say(0, "generating the answer")
        answer_ids = generate_answers(loaded, [prompts[0].ids], max_new_tokens)[0]
        if len(answer_ids) == 0:
            raise PromptError(
                f"Question {number + 1}: the model gave an empty answer, so there is nothing to score."
            )
        answer, origin = answer_text(loaded, answer_ids), "generated"
    else:
        answer_ids, answer, origin = given, case.answer.strip(), "given"
    say(0, f"all {len(placed)} orders")
    scores, logprobs = retrieval_batch(loaded, prompts, answer_ids, heads)
    return [
        Run(
            number,
            index,
            ids,
            passage_scores(scores[index], "attention"),
            answer,
            origin,
            float(logprobs[index].sum()),
        )
        for index, ids in enumerate(placed)
    ]


def _attributed_runs(
    loaded: LoadedModel,
    study: Study,
    number: int,
    placed: Sequence[tuple[str, ...]],
    method: str,
    max_new_tokens: int,
    say: Say,
    should_stop: Callable[[], bool],
) -> list[Run] | None:
    """Question ``number`` attributed by ``method`` in each order of ``placed``, one order at a time (the answer
    generated in the first order is teacher-forced in the others); None if stopped before the last order."""
    case = study.cases[number]
    answer, origin = case.answer, "given" if case.answer is not None else "generated"
    done: list[Run] = []
    for index, ids in enumerate(placed):
        if index and should_stop():
            return None
        say(index, f"order {index + 1} of {len(placed)}")
        result = attribute(
            loaded, case.question, [study.text(i) for i in ids], method=method, answer=answer,
            max_new_tokens=max_new_tokens,
        )  # fmt: skip
        if len(result.passages) != len(ids):
            raise PromptError(f"Question {number + 1}: a passage is empty, so positions would not line up.")
        answer = result.answer  # generated in the first order, teacher-forced in the others
        score = result.passage_scores(method)
        done.append(Run(number, index, ids, score, result.answer, origin, float(result.logprobs.sum())))
    return done


def run_study(
    loaded: LoadedModel,
    study: Study,
    *,
    n_orders: int = 3,
    order_kind: str = "random",
    seed: int = 0,
    method: str = "attention",
    heads: Sequence[Head] | None = None,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> StudyResult:
    """Attribute every question of ``study`` in ``n_orders`` orders each (question i's orders seeded by (seed, i)).

    ``heads`` overrides the calibrated retrieval heads; ``progress(done, "question 7 of 24, all 3 orders")``
    hears about every step (the attention method scores a question's orders together, ablation one order at a
    time); when ``should_stop()`` turns true the study ends early with the whole questions done so far.
    """
    if method not in STUDY_METHODS:
        raise PromptError(f"Unknown study method {method!r}; choose from {', '.join(STUDY_METHODS)}.")
    if not study.cases:
        raise PromptError("The study has no questions.")
    started = time.perf_counter()
    if method == "attention" and heads is None:
        heads = calibration(loaded).heads
    stop = should_stop or (lambda: False)
    runs: list[Run] = []
    complete = True
    total = len(study.cases)
    for number, case in enumerate(study.cases):
        planned = orders(len(case.passage_ids), n_orders, order_kind, seed + 7919 * number)
        placed = [tuple(case.passage_ids[i] for i in order) for order in planned]
        if stop():
            complete = False
            break

        def say(index: int, what: str, number: int = number, k: int = len(placed)) -> None:
            if progress is not None:
                progress((number * k + index) / (total * k), f"question {number + 1} of {total}, {what}")

        done = (
            _attention_runs(loaded, study, number, placed, heads, max_new_tokens, say)
            if method == "attention"
            else _attributed_runs(loaded, study, number, placed, method, max_new_tokens, say, stop)
        )
        if done is None:
            complete = False
            break
        runs += done
    rows = [row for run in runs for row in run.rows()]
    return StudyResult(
        study=study, method=method, n_orders=n_orders, order_kind=order_kind, seed=seed, runs=tuple(runs),
        passages=passage_summaries(rows, seed), positions=position_curve(rows, seed),
        seconds=time.perf_counter() - started, complete=complete,
    )  # fmt: skip


def _mean_logprobs(result: StudyResult) -> dict[int, float]:
    """{question: mean over orders of its given answer's log-probability} (generated answers left out)."""
    by_question: dict[int, list[float]] = {}
    for run in result.runs:
        if run.answer_origin == "given":
            by_question.setdefault(run.question, []).append(run.logprob)
    return {q: float(np.mean(v)) for q, v in by_question.items()}


def compare(before: StudyResult, after: StudyResult, passage_id: str) -> Comparison:
    """Pair a study with its rewrite (same questions, same orders) on passage ``passage_id``."""
    if (before.n_orders, before.order_kind, before.seed, before.method) != (
        after.n_orders, after.order_kind, after.seed, after.method,
    ):  # fmt: skip
        raise PromptError("The two studies used different orders or methods, so they cannot be paired.")
    old_answers, new_answers = before.answers(), after.answers()
    changed = tuple(
        (q, old_answers[q], new_answers[q])
        for q in sorted(set(old_answers) & set(new_answers))
        if before.study.cases[q].answer is None and old_answers[q] != new_answers[q]
    )
    old_lp, new_lp = _mean_logprobs(before), _mean_logprobs(after)
    shared = sorted(set(old_lp) & set(new_lp))
    old_values, new_values = np.array([old_lp[q] for q in shared]), np.array([new_lp[q] for q in shared])
    return Comparison(
        share=paired_change(before.rows, after.rows, passage_id, before.seed),
        answer_changes=changed,
        logprob_before=bootstrap_interval(old_values, seed=before.seed),
        logprob_after=bootstrap_interval(new_values, seed=before.seed),
        logprob_delta=bootstrap_interval(new_values - old_values, seed=before.seed),
    )
