"""Attention into passages, reduced during the forward pass, equals sums of the full recorded weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnviz.sources import attention
from attnviz.sources.attention import (
    PassageAttention,
    aggregate,
    passage_attention,
    retrieval_batch,
    retrieval_scores,
)
from attnviz.sources.passages import build_prompt
from attnviz.tracing.inputs import PromptError
from attnviz.tracing.trace import record

PASSAGES = ["The cat sleeps on the warm mat.", "Paris is the capital of France.", "Nine plus one is ten."]


def test_aggregate_selects_heads_layers_sink_and_shares() -> None:
    mass = np.zeros((2, 2, 1, 2))
    mass[0, 0, 0] = [0.1, 0.3]
    mass[1, 1, 0] = [0.4, 0.0]
    sink = np.full((2, 2, 1), 0.5)
    attention = PassageAttention(mass=mass, value_mass=mass * 2, sink=sink)
    np.testing.assert_allclose(aggregate(attention, heads=[(0, 0)]), [[0.1, 0.3]])
    np.testing.assert_allclose(aggregate(attention, layers=[1]), [[0.2, 0.0]])
    np.testing.assert_allclose(aggregate(attention), [[0.125, 0.075]])
    np.testing.assert_allclose(aggregate(attention, heads=[(0, 0)], exclude_sink=True), [[0.2, 0.6]])
    np.testing.assert_allclose(aggregate(attention, heads=[(0, 0)], shares=True), [[0.25, 0.75]])
    np.testing.assert_allclose(aggregate(attention, heads=[(0, 0)], value_weighted=True), [[0.2, 0.6]])
    with pytest.raises(PromptError):
        aggregate(attention, layers=[])


def test_passage_attention_equals_sums_of_the_full_recorded_weights(tiny) -> None:
    loaded = tiny("llama")
    prompt = build_prompt(loaded, "Where is Paris?", PASSAGES)
    answer_ids = np.array([100, 200, 300])
    reduced, logprobs = passage_attention(loaded, prompt, answer_ids)
    ids = torch.as_tensor(np.concatenate([prompt.ids, answer_ids]))[None]
    outputs, full = record(loaded, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    weights = full.weights["decoder"][0]  # [layers, heads, n, n]
    n_prompt = len(prompt.ids)
    rows = weights[:, :, n_prompt - 1 : n_prompt + 2]
    for index, (start, end) in enumerate(prompt.spans):
        np.testing.assert_allclose(reduced.mass[..., index], rows[..., start:end].sum(-1), atol=1e-5)
    np.testing.assert_allclose(reduced.sink, rows[..., 0], atol=1e-6)
    assert reduced.mass.shape == (loaded.n_layers, loaded.n_heads, 3, len(PASSAGES))
    expected = torch.log_softmax(outputs.logits[0, n_prompt - 1 : n_prompt + 2].float(), -1)
    np.testing.assert_allclose(
        logprobs, expected[torch.arange(3), torch.as_tensor(answer_ids)].numpy(), atol=1e-4
    )


def test_value_mass_equals_eager_weights_times_value_norms(tiny) -> None:
    """``value_mass`` from transformers' own pieces: eager ``output_attentions`` and the v_proj outputs.

    Each key counts with the norm of its value vector (the key/value head a query head shares under
    GQA), as a share of that query row's value-weighted total."""
    loaded = tiny("llama")
    prompt = build_prompt(loaded, "Where is Paris?", PASSAGES)
    answer_ids = np.array([100, 200, 300])
    reduced, _ = passage_attention(loaded, prompt, answer_ids)
    config = loaded.model.config
    eager = type(loaded.model).from_pretrained(loaded.model.name_or_path, attn_implementation="eager").eval()
    values: list[torch.Tensor] = []
    hooks = [
        layer.self_attn.v_proj.register_forward_hook(lambda _m, _i, out: values.append(out[0]))
        for layer in eager.model.layers
    ]
    ids = torch.as_tensor(np.concatenate([prompt.ids, answer_ids]))[None]
    try:
        with torch.no_grad():
            # [layers, heads, n, n]
            weights = torch.stack(eager(ids, output_attentions=True).attentions, 1)[0]
    finally:
        for hook in hooks:
            hook.remove()
    head_dim = config.hidden_size // config.num_attention_heads
    groups = config.num_attention_heads // config.num_key_value_heads
    norms = torch.stack([v.reshape(len(v), -1, head_dim).norm(dim=-1).T for v in values])  # [layers, kv, n]
    norms = norms.repeat_interleave(groups, dim=1)  # query head h reads key/value head h // groups
    n_prompt = len(prompt.ids)
    # The rows whose queries predict the answer tokens.
    weighted = (weights * norms[:, :, None, :])[:, :, n_prompt - 1 : n_prompt + 2]
    for index, (start, end) in enumerate(prompt.spans):
        expected = weighted[..., start:end].sum(-1) / weighted.sum(-1)
        np.testing.assert_allclose(reduced.value_mass[..., index], expected.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "family", ["llama", "gpt2"]
)  # GPT-2's learned positions: padding must not shift them
def test_retrieval_batch_equals_each_prompt_scored_alone(
    tiny, monkeypatch: pytest.MonkeyPatch, family: str
) -> None:
    """A study's orders (and a longer prompt, so rows are left-padded) scored together give what each gives
    alone: the retrieval heads' scores and the answer's log-probs, also when split into one prompt per pass."""
    loaded = tiny(family)
    heads = [(1, 3), (0, 1), (1, 0)]
    answer_ids = np.array([100, 200, 300])
    longer = [PASSAGES[0] + " It naps there every single afternoon.", *PASSAGES[1:]]
    prompts = [build_prompt(loaded, "Where is Paris?", p) for p in (PASSAGES, PASSAGES[::-1], longer)]
    assert len({len(p.ids) for p in prompts}) > 1  # rows of unequal length: padding is exercised
    scores, logprobs = retrieval_batch(loaded, prompts, answer_ids, heads)
    assert scores.shape == (3, 3, len(PASSAGES)) and logprobs.shape == (3, 3)
    for prompt, batched, batched_logprobs in zip(prompts, scores, logprobs, strict=True):
        alone, alone_logprobs = passage_attention(loaded, prompt, answer_ids)
        np.testing.assert_allclose(batched, retrieval_scores(alone, heads), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(batched_logprobs, alone_logprobs, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(attention, "BATCH_SCORE_CELLS", 1)  # one prompt per pass: nothing padded
    np.testing.assert_allclose(
        retrieval_batch(loaded, prompts, answer_ids, heads)[0], scores, rtol=1e-4, atol=1e-6
    )
    with pytest.raises(PromptError, match="same number of sources"):
        retrieval_batch(loaded, [prompts[0], build_prompt(loaded, "Where?", PASSAGES[:2])], answer_ids, heads)
