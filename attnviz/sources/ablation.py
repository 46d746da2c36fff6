"""Ablation over sources: leave-one-out for a few sources, random subsets with a linear surrogate for many.

Removing a source and scoring the same answer again (teacher forcing) asks the model
directly how much the answer depends on it. Up to ``max_leave_one_out`` sources, each is
removed once (one forward pass each). Beyond that, a bounded number of random subsets
(each source kept with probability 1/2) are scored, and a linear model of the answer
tokens' log-probabilities from which sources were kept gives each source's effect
(the ContextCite idea: a surrogate fitted to ablations, at a fixed budget of passes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from attnviz.models.loading import LoadedModel
from attnviz.sources.attention import answer_logprobs
from attnviz.sources.passages import PassagePrompt, Progress, build_prompt, without_sources

MAX_LEAVE_ONE_OUT = 16
DEFAULT_PASSES = 32
MAX_PASSES = 96


@dataclass(frozen=True)
class SourceAblation:
    """Each source's effect on the answer, measured by removing sources.

    ``drops`` [answer_tokens, sources] is the log-probability each answer token loses when
    the source is removed (leave-one-out), or the surrogate's estimate of it (subsets);
    positive means the source supports the answer. ``kind`` is ``"leave-one-out"`` or
    ``"subsets"``; ``passes`` is the number of forward passes it took.
    """

    drops: np.ndarray
    kind: str
    passes: int


def ablated_logprobs(
    loaded: LoadedModel, prompt: PassagePrompt, answer_ids: np.ndarray, removed: Sequence[int]
) -> np.ndarray:
    """[answer_tokens] log-probabilities of the answer with the ``removed`` sources cut out of the prompt."""
    passages = without_sources(prompt.passages, prompt.sources, removed) or ["(no passage)"]
    return answer_logprobs(loaded, build_prompt(loaded, prompt.question, passages).ids, answer_ids)


def random_subsets(n_sources: int, passes: int, seed: int = 0) -> np.ndarray:
    """[passes, sources] boolean masks of the sources kept, each kept with probability 1/2 (seeded)."""
    return np.random.default_rng(seed).random((passes, n_sources)) < 0.5


def fit_surrogate(kept: np.ndarray, values: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """Linear weights [sources, outputs] predicting ``values`` [samples, outputs] from ``kept`` [samples, sources].

    Least squares with an intercept and a small ridge penalty (not on the intercept), so
    the fit is defined even with fewer samples than sources.
    """
    design = np.hstack([kept.astype(np.float64), np.ones((len(kept), 1))])
    penalty = ridge * np.eye(design.shape[1])
    penalty[-1, -1] = 0.0
    weights = np.linalg.solve(design.T @ design + penalty, design.T @ values.astype(np.float64))
    return weights[:-1].astype(np.float32)


def ablation_kind(n_sources: int, max_leave_one_out: int = MAX_LEAVE_ONE_OUT) -> str:
    """How ``n_sources`` are ablated: "leave-one-out" up to ``max_leave_one_out`` sources, else "subsets"."""
    return "leave-one-out" if n_sources <= max_leave_one_out else "subsets"


def planned_passes(
    n_sources: int, passes: int = DEFAULT_PASSES, max_leave_one_out: int = MAX_LEAVE_ONE_OUT
) -> int:
    """Forward passes an ablation of ``n_sources`` takes: one per source when leave-one-out, else
    ``passes`` random subsets (2 to MAX_PASSES); the page states it before anything runs."""
    if ablation_kind(n_sources, max_leave_one_out) == "leave-one-out":
        return n_sources
    return max(2, min(passes, MAX_PASSES))


def ablate_sources(
    loaded: LoadedModel,
    prompt: PassagePrompt,
    answer_ids: np.ndarray,
    base: np.ndarray,
    *,
    passes: int = DEFAULT_PASSES,
    max_leave_one_out: int = MAX_LEAVE_ONE_OUT,
    seed: int = 0,
    progress: Progress | None = None,
) -> SourceAblation:
    """Effect of every source on the answer whose log-probabilities with all sources are ``base`` [answer_tokens].

    Leave-one-out when there are at most ``max_leave_one_out`` sources, else ``passes``
    (at most MAX_PASSES) random-subset ablations with a linear surrogate.
    """
    n_sources = len(prompt.sources)
    if ablation_kind(n_sources, max_leave_one_out) == "leave-one-out":
        drops = np.zeros((len(answer_ids), n_sources), dtype=np.float32)
        for index in range(n_sources):
            drops[:, index] = base - ablated_logprobs(loaded, prompt, answer_ids, [index])
            if progress is not None:
                progress((index + 1) / n_sources, f"Leave-one-out: removed source {index + 1} of {n_sources}")
        return SourceAblation(drops, "leave-one-out", n_sources)
    passes = planned_passes(n_sources, passes, max_leave_one_out)
    kept = random_subsets(n_sources, passes, seed)
    values = np.zeros((passes, len(answer_ids)), dtype=np.float32)
    for sample, mask in enumerate(kept):
        values[sample] = ablated_logprobs(loaded, prompt, answer_ids, np.flatnonzero(~mask).tolist())
        if progress is not None:
            progress((sample + 1) / passes, f"Random-subset ablation: pass {sample + 1} of {passes}")
    return SourceAblation(fit_surrogate(kept, values).T, "subsets", passes)
