"""Source ablation: the surrogate recovers planted effects; subsets find the planted sentence with SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnviz.models.loading import LoadedModel
from attnviz.sources.ablation import ablate_sources, fit_surrogate, random_subsets
from attnviz.sources.attention import answer_logprobs
from attnviz.sources.attribution import attribute
from attnviz.sources.calibration import synthetic_cases
from attnviz.sources.passages import build_prompt, without_sources

SENTENCES = [
    ["The cat sleeps.", "It likes the mat."],
    ["Paris is the capital of France."],
    ["Nine plus one is ten."],
]
PASSAGES = [" ".join(sentences) for sentences in SENTENCES]
QUESTION = "Where is Paris?"


def test_surrogate_recovers_planted_linear_effects() -> None:
    kept = random_subsets(20, 48, seed=3)
    planted = np.zeros((20, 2))
    planted[7] = [2.0, 0.5]
    planted[12] = [-1.0, 0.0]
    values = kept @ planted + 0.3 + np.random.default_rng(0).normal(0, 0.01, (48, 2))
    np.testing.assert_allclose(fit_surrogate(kept, values), planted, atol=0.05)


def direct_logprobs(loaded: LoadedModel, kept: np.ndarray, answer: np.ndarray) -> np.ndarray:
    """[answer_tokens] log-probs of ``answer`` by a plain transformers forward, with only the ``kept`` [4]
    sentences of PASSAGES in the prompt (written out here, not cut by the code under test)."""
    flags = iter(kept)
    passages = [" ".join(s for s in sentences if next(flags)) for sentences in SENTENCES]
    ids = build_prompt(loaded, QUESTION, [p for p in passages if p] or ["(no passage)"]).ids
    sequence = torch.as_tensor(np.concatenate([ids, answer]))[None]
    with torch.no_grad():
        logits = loaded.model(sequence).logits[0, len(ids) - 1 : -1]
    return torch.log_softmax(logits.float(), -1)[torch.arange(len(answer)), torch.as_tensor(answer)].numpy()


def test_leave_one_out_is_the_drop_of_removing_each_sentence(tiny) -> None:
    loaded = tiny("llama")
    prompt = build_prompt(loaded, QUESTION, PASSAGES, "sentence")
    answer = np.array([300, 400])
    base = direct_logprobs(loaded, np.ones(4, dtype=bool), answer)
    np.testing.assert_allclose(answer_logprobs(loaded, prompt.ids, answer), base, atol=1e-5)
    done: list[float] = []
    result = ablate_sources(loaded, prompt, answer, base, progress=lambda f, _: done.append(f))
    assert result.kind == "leave-one-out" and result.passes == len(prompt.sources) == 4
    assert done[-1] == 1.0 and done == sorted(done)
    for removed in range(4):
        expected = base - direct_logprobs(loaded, np.arange(4) != removed, answer)
        np.testing.assert_allclose(result.drops[:, removed], expected, atol=1e-4)
    assert without_sources(prompt.passages, prompt.sources, [1])[0] == "The cat sleeps."


def test_subsets_are_bounded_and_used_beyond_the_leave_one_out_limit(tiny) -> None:
    """Beyond the leave-one-out limit: the surrogate fitted to these very subsets' log-probs (computed directly)."""
    loaded = tiny("llama")
    prompt = build_prompt(loaded, QUESTION, PASSAGES, "sentence")
    answer = np.array([300, 400])
    base = answer_logprobs(loaded, prompt.ids, answer)
    result = ablate_sources(loaded, prompt, answer, base, passes=6, max_leave_one_out=2)
    assert result.kind == "subsets" and result.passes == 6 and result.drops.shape == (2, 4)
    kept = random_subsets(4, 6, seed=0)
    values = np.stack([direct_logprobs(loaded, mask, answer) for mask in kept])
    np.testing.assert_allclose(result.drops, fit_surrogate(kept, values).T, atol=1e-3)
    assert np.abs(result.drops).max() > 1e-3  # the sentences do move this answer: not all zeros


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
