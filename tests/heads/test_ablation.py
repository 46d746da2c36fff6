"""Head ablation changes next-token predictions; without ablation it is the plain model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnviz.heads.ablation import NoPredictionError, ablate_heads, next_token, token_logprobs
from attnviz.hooks import Hooks, Site
from attnviz.tracing.forward import forward
from attnviz.tracing.inputs import prompt_inputs
from attnviz.tracing.prediction import rank_changes
from attnviz.tracing.trace import trace as trace_prompt

PROMPT = "The capital of France is"


def test_baseline_is_the_plain_model(smollm2) -> None:
    trace = trace_prompt(smollm2, PROMPT)
    prediction = next_token(smollm2, trace, k=5)
    with torch.inference_mode():
        logits = smollm2.model(torch.tensor([trace.input_ids.tolist()])).logits[0, -1]
    probs = torch.softmax(logits, -1)
    np.testing.assert_array_equal(prediction.ids, torch.topk(probs, 5).indices.numpy())
    np.testing.assert_allclose(prediction.probs, torch.topk(probs, 5).values.numpy(), atol=1e-5)
    assert prediction.tokens[0].strip() == "Paris"
    assert (np.diff(prediction.probs) <= 0).all()


def test_ablating_heads_changes_the_prediction(smollm2) -> None:
    trace = trace_prompt(smollm2, PROMPT)
    one = ablate_heads(smollm2, trace, {Site("decoder", 3): (0,)}, k=5)
    every = ablate_heads(
        smollm2, trace, {Site("decoder", layer): tuple(range(9)) for layer in range(30)}, k=5
    )
    assert one.baseline.tokens == every.baseline.tokens
    assert not np.allclose(one.intervened.probs, one.baseline.probs)
    assert every.intervened.tokens[0] != every.baseline.tokens[0]


def test_rank_changes_mark_moves_and_new_tokens(smollm2) -> None:
    trace = trace_prompt(smollm2, PROMPT)
    result = ablate_heads(smollm2, trace, {Site("decoder", layer): tuple(range(9)) for layer in range(30)}, k=5)
    same = rank_changes(result.baseline, result.baseline)
    assert [c.mark for c in same] == ["="] * 5 and [c.rank for c in same] == [1, 2, 3, 4, 5]
    changes = rank_changes(result.intervened, result.baseline)
    before = {int(i): rank + 1 for rank, i in enumerate(result.baseline.ids.tolist())}
    for change, token_id in zip(changes, result.intervened.ids.tolist(), strict=True):
        if int(token_id) not in before:
            assert change.mark == "new" and change.other_probability is None
        else:
            moved = before[int(token_id)] - change.rank
            assert change.mark == ("=" if moved == 0 else f"▲ {moved}" if moved > 0 else f"▼ {-moved}")
            assert change.other_probability == pytest.approx(float(result.baseline.probs[before[int(token_id)] - 1]))
    assert any(c.mark != "=" for c in changes)  # switching every head off reorders the top 5


def test_encoder_without_lm_head_says_so(minilm) -> None:
    with pytest.raises(NoPredictionError, match="language-model head"):
        next_token(minilm, trace_prompt(minilm, "hello"))


def test_encoder_decoder_predicts_after_the_target(tiny) -> None:
    loaded = tiny("t5")
    trace = trace_prompt(loaded, "translate this", target="ok")
    result = ablate_heads(loaded, trace, {Site("cross", 1): (0, 1, 2, 3)}, k=3)
    assert len(result.baseline.tokens) == 3
    assert not np.allclose(result.baseline.probs, result.intervened.probs)


def test_every_ablated_token_has_its_intact_probability(smollm2) -> None:
    """A token new to the top-k still shows how likely the intact model found it (less than its top-k)."""
    trace = trace_prompt(smollm2, PROMPT)
    result = ablate_heads(smollm2, trace, {Site("decoder", layer): tuple(range(9)) for layer in range(30)}, k=5)
    changes = rank_changes(result.intervened, result.baseline, result.intact_probs)
    assert all(c.other_probability is not None for c in changes)
    new = [c for c in changes if c.other_rank is None]
    assert new and all(c.other_probability < float(result.baseline.probs[-1]) for c in new)
    for change in changes:
        if change.other_rank is not None:
            expected = float(result.baseline.probs[change.other_rank - 1])
            assert change.other_probability == pytest.approx(expected, rel=1e-5)


def test_rows_of_one_pass_each_with_its_ablation_equal_a_pass_of_their_own(tiny) -> None:
    """Batched log-probs (scored positions only, one ablation per row) against full logits of one row at a time."""
    loaded = tiny("llama")
    rng = np.random.default_rng(0)
    rows = [tuple(int(i) for i in rng.integers(10, 5000, 24)) for _ in range(4)]
    ablations = [
        {}, {Site("decoder", 0): (0,)}, {Site("decoder", 1): (1, 2)}, {Site("decoder", 0): (3,), Site("decoder", 1): (0,)}
    ]  # fmt: skip
    first = 9
    batched = token_logprobs(loaded, rows, ablations, first)
    assert batched.shape == (4, 24 - 1 - first)
    for ids, ablate, got in zip(rows, ablations, batched, strict=True):
        logits = forward(loaded, prompt_inputs(ids), Hooks(ablate=ablate)).logits[0, :-1]
        alone = torch.log_softmax(logits, -1)[torch.arange(23), torch.tensor(ids[1:])][first:]
        np.testing.assert_allclose(got, alone.numpy(), rtol=1e-5, atol=1e-5)
    assert all(not np.allclose(batched[0], other, atol=1e-3) for other in batched[1:])  # each ablation tells
