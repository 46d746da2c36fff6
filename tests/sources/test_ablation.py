"""Source ablation: the surrogate recovers planted effects; subsets find the planted sentence with SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.sources.ablation import ablate_sources, fit_surrogate, random_subsets
from attnviz.sources.attention import answer_logprobs
from attnviz.sources.attribution import attribute
from attnviz.sources.calibration import synthetic_cases
from attnviz.sources.passages import build_prompt, without_sources

PASSAGES = ["The cat sleeps. It likes the mat.", "Paris is the capital of France.", "Nine plus one is ten."]


def test_surrogate_recovers_planted_linear_effects() -> None:
    kept = random_subsets(20, 48, seed=3)
    planted = np.zeros((20, 2))
    planted[7] = [2.0, 0.5]
    planted[12] = [-1.0, 0.0]
    values = kept @ planted + 0.3 + np.random.default_rng(0).normal(0, 0.01, (48, 2))
    np.testing.assert_allclose(fit_surrogate(kept, values), planted, atol=0.05)


def test_leave_one_out_is_the_drop_of_removing_each_sentence(tiny) -> None:
    loaded = tiny("llama")
    prompt = build_prompt(loaded, "Where is Paris?", PASSAGES, "sentence")
    answer = np.array([300, 400])
    base = answer_logprobs(loaded, prompt.ids, answer)
    done: list[float] = []
    result = ablate_sources(loaded, prompt, answer, base, progress=lambda f, _: done.append(f))
    assert result.kind == "leave-one-out" and result.passes == len(prompt.sources) == 4
    assert done[-1] == 1.0 and done == sorted(done)
    cut = build_prompt(loaded, "Where is Paris?", ["The cat sleeps.", *PASSAGES[1:]])
    np.testing.assert_allclose(result.drops[:, 1], base - answer_logprobs(loaded, cut.ids, answer), atol=1e-4)
    assert without_sources(prompt.passages, prompt.sources, [1])[0] == "The cat sleeps."


def test_subsets_are_bounded_and_used_beyond_the_leave_one_out_limit(tiny) -> None:
    loaded = tiny("llama")
    prompt = build_prompt(loaded, "Where is Paris?", PASSAGES, "sentence")
    answer = np.array([300, 400])
    base = answer_logprobs(loaded, prompt.ids, answer)
    result = ablate_sources(loaded, prompt, answer, base, passes=6, max_leave_one_out=2)
    assert result.kind == "subsets" and result.passes == 6 and result.drops.shape == (2, 4)


@pytest.mark.slow
def test_subset_ablation_recovers_the_planted_sentence(smollm2) -> None:
    """Synthetic cases as two passages of several sentences; subsets (not leave-one-out) must find the fact."""
    for case in synthetic_cases(3, seed=7)[1:]:
        halves = [
            " ".join(case.passages[: len(case.passages) // 2]),
            " ".join(case.passages[len(case.passages) // 2 :]),
        ]
        result = attribute(
            smollm2, case.question, halves, method="ablation", answer=case.answer_contains,
            granularity="sentence", max_leave_one_out=0, passes=24,
        )  # fmt: skip
        assert result.ablation.kind == "subsets" and result.ablation.passes == 24
        top = result.ranking("ablation")[0]
        assert result.source_text(int(top)) == case.passages[case.gold], (result.labels, case)
