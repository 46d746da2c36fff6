"""Means, attention rollout and value-norm weighting: hand-made matrices and real models."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from attnviz.heads import aggregate
from attnviz.heads.aggregate import UnsupportedModelError
from attnviz.heads.summary import summarise
from attnviz.tracing.inputs import batch_inputs
from attnviz.tracing.layer_inputs import keep_inputs
from attnviz.tracing.stacks import stack_view, stacks_of
from attnviz.tracing.trace import trace as trace_prompt


def test_layer_and_model_means() -> None:
    attention = np.arange(2 * 2 * 2 * 2, dtype=np.float32).reshape(2, 2, 2, 2)
    np.testing.assert_allclose(aggregate.layer_mean(attention, 1), (attention[1, 0] + attention[1, 1]) / 2)
    np.testing.assert_allclose(aggregate.model_mean(attention), attention.mean((0, 1)))


def test_rollout_of_identity_is_identity() -> None:
    np.testing.assert_allclose(aggregate.rollout(np.eye(4)[None, None].repeat(3, 0)), np.eye(4), atol=1e-6)


def test_rollout_multiplies_residual_mixed_layers() -> None:
    first = np.array([[1.0, 0.0], [1.0, 0.0]])  # everything reads token 0
    second = np.array([[1.0, 0.0], [0.5, 0.5]])
    attention = np.stack([np.stack([first, first]), np.stack([second, second])])  # [2 layers, 2 heads, 2, 2]
    a1 = 0.5 * first + 0.5 * np.eye(2)
    a2 = 0.5 * second + 0.5 * np.eye(2)
    expected = (a2 / a2.sum(-1, keepdims=True)) @ (a1 / a1.sum(-1, keepdims=True))
    result = aggregate.rollout(attention)
    np.testing.assert_allclose(result, expected, atol=1e-6)
    np.testing.assert_allclose(result.sum(-1), 1.0, atol=1e-6)
    assert result[1, 0] == pytest.approx(0.25 * 1 + 0.75 * 0.5)


def causal_rows(n: int, seed: int) -> np.ndarray:
    """A random causal attention map [n, n] that never reads the first token after query 0."""
    weights = np.tril(np.random.default_rng(seed).random((n, n))) + np.eye(n)
    weights[1:, 0] = 0.0
    return weights / weights.sum(-1, keepdims=True)


def test_rollout_without_sink_sees_through_a_sink() -> None:
    """Heads that park 99.9% of their weight on token 0: plain rollout gives ~1.0 to token 0 for every query;
    without the sink, each query's remaining flow is renormalised over the other tokens and ranks them."""
    n, sink = 6, np.zeros((6, 6))
    sink[:, 0] = 1.0
    patterns = np.stack(
        [np.stack([causal_rows(n, 2 * layer), causal_rows(n, 2 * layer + 1)]) for layer in range(12)]
    )
    with_sink = 0.999 * sink + 0.001 * patterns
    plain = aggregate.rollout(with_sink)
    assert plain[-1, 0] > 0.99 and aggregate.sink_share(plain) > 0.99  # what the page showed
    seen = aggregate.rollout(with_sink, sink=False)
    np.testing.assert_allclose(seen.sum(-1), 1.0, atol=1e-5)
    assert (seen[1:, 0] == 0).all() and aggregate.sink_share(seen) == 0.0
    np.testing.assert_allclose(seen[1:, 1:], plain[1:, 1:] / plain[1:, 1:].sum(-1, keepdims=True), rtol=1e-4)
    assert seen[-1, 1:].max() > 0.2  # readable shares, not the 1e-6 that hiding the column left


def test_without_sink_keeps_the_first_row_and_renormalises_the_others() -> None:
    attention = np.array([[1.0, 0.0, 0.0], [0.8, 0.2, 0.0], [0.6, 0.1, 0.3]])
    np.testing.assert_allclose(
        aggregate.without_sink(attention), [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.25, 0.75]], atol=1e-6
    )


def test_head_output_norms_slice_the_projection_per_head() -> None:
    projection = nn.Linear(4, 3, bias=False)
    with torch.no_grad():
        projection.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 0, 3.0]]))
    value = torch.tensor(
        [[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]]
    )  # [2 heads, 2 keys, head_dim 2]
    norms = aggregate.head_output_norms(value, projection)
    # head 0 uses input columns 0-1 (outputs 1 and 2), head 1 uses 2-3 (output 3 only on column 3).
    np.testing.assert_allclose(norms.numpy(), [[1.0, 2.0], [0.0, 3.0]])


def test_norm_weighted_scales_columns() -> None:
    attention = np.array([[[0.5, 0.5], [0.25, 0.75]]])
    np.testing.assert_allclose(
        aggregate.norm_weighted(attention, np.array([[2.0, 4.0]])), [[[1.0, 2.0], [0.5, 3.0]]]
    )


def test_smollm2_value_norms_match_head_outputs(smollm2) -> None:
    """Query 0 of a decoder reads only key 0, so each head's share of o_proj is exactly f_h(x_0)."""
    trace = trace_prompt(smollm2, "Attention is not only a weight")
    result = aggregate.value_norms(smollm2, trace)
    assert result.norms.shape == (30, 9, trace.n_tokens)
    layer = 7
    projection = smollm2.model.model.layers[layer].self_attn.o_proj
    captured: list[torch.Tensor] = []
    handle = projection.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    try:
        with torch.inference_mode():
            smollm2.model(torch.tensor([trace.input_ids.tolist()]))
    finally:
        handle.remove()
    head_dim = projection.weight.shape[1] // 9
    weight = projection.weight.detach()
    for head in range(9):
        share = captured[0][0, 0, head * head_dim : (head + 1) * head_dim]
        expected = torch.linalg.vector_norm(weight[:, head * head_dim : (head + 1) * head_dim] @ share)
        assert result.norms[layer, head, 0] == pytest.approx(float(expected), rel=1e-4)


def test_bert_output_projection_is_found_next_to_self_attention(minilm) -> None:
    attention = minilm.model.encoder.layer[2].attention
    assert aggregate.output_projection(minilm.model, attention.self) is attention.output.dense
    result = aggregate.value_norms(minilm, trace_prompt(minilm, "a small test"))
    assert result.norms.shape[:2] == (6, 12) and (result.norms > 0).all()


def test_unsupported_projection_has_a_clear_message(tiny) -> None:
    loaded = tiny("gpt2")  # GPT-2's c_proj is a Conv1D, not a Linear
    with pytest.raises(UnsupportedModelError, match="output projection"):
        aggregate.value_norms(loaded, trace_prompt(loaded, "hello there"))


def test_stack_views_and_aggregates_of_an_encoder_decoder(tiny) -> None:
    loaded = tiny("bart")
    trace = trace_prompt(loaded, "a source sentence", target="a target")
    assert stacks_of(trace) == ("encoder", "decoder", "cross")
    cross = stack_view(trace, "cross")
    assert cross.attention.shape[-2:] == (len(trace.target_tokens), trace.n_tokens)
    assert (cross.query_tokens, cross.key_tokens) == (trace.target_tokens, trace.tokens)
    norms = aggregate.value_norms(loaded, trace, "cross")
    weighted = aggregate.aggregate_map(cross, "value-norm weighted", 1, norms)
    np.testing.assert_allclose(weighted, (cross.attention[1] * norms.norms[1][:, None, :]).mean(0), rtol=1e-6)
    np.testing.assert_allclose(
        aggregate.aggregate_map(cross, "layer mean", 0, None), cross.attention[0].mean(0)
    )
    with pytest.raises(UnsupportedModelError, match="square"):
        aggregate.aggregate_map(cross, "rollout", 0, None)
    encoder = stack_view(trace, "encoder")
    np.testing.assert_allclose(
        aggregate.aggregate_map(encoder, "rollout", 0), aggregate.rollout(trace.attention)
    )


def full_trace_aggregates(
    loaded, text: str, float16: bool, target: str | None = None
) -> dict[tuple[str, int], np.ndarray]:
    """Every aggregate of the main stack (a layer's at the first and last layer) from a full trace: Explore's
    float16 maps, or float32."""
    traced = trace_prompt(loaded, text, target=target, float16=float16, max_tokens=None)
    view = stack_view(traced, loaded.main_stack)
    norms = aggregate.value_norms(loaded, traced)
    return {
        (name, index): aggregate.aggregate_map(view, name, index, norms)
        for name in aggregate.AGGREGATES
        for index in ((0, len(traced.layers) - 1) if name in aggregate.ONE_LAYER else (0,))
    }


def assert_aggregates_equal(
    compute: Callable[[str, int], np.ndarray], expected: dict[tuple[str, int], np.ndarray], atol: float
) -> None:
    """``compute(name, layer_index)`` equals each expected map: weights within ``atol``, α·‖f(x)‖ within
    ``atol`` of its largest value."""
    for (name, index), reference in expected.items():
        ours = compute(name, index)
        assert ours.dtype == np.float32 and ours.shape == reference.shape
        scale = float(np.abs(reference).max()) if name == "value-norm weighted" else 1.0
        np.testing.assert_allclose(
            ours, reference, atol=atol * scale, rtol=0, err_msg=f"{name}, layer {index}"
        )


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_reduced_aggregates_equal_the_full_traces(tiny, family: str) -> None:
    """From the kept layer inputs or from a forward pass, keeping only head means: every aggregate equals the
    float32 full trace's up to float32 rounding, and Explore's float16 one within display precision."""
    loaded = tiny(family)
    text = "one two three four five six seven eight nine ten, one two three"
    _, kept = keep_inputs(loaded, lambda: summarise(loaded, text))
    inputs = batch_inputs(loaded, [text], max_tokens=None).inputs
    exact = full_trace_aggregates(loaded, text, float16=False)
    assert_aggregates_equal(partial(aggregate.reduced_aggregate, loaded, kept), exact, atol=1e-6)
    assert_aggregates_equal(partial(aggregate.reduced_aggregate, loaded, inputs), exact, atol=1e-6)
    explores = full_trace_aggregates(loaded, text, float16=True)
    assert_aggregates_equal(partial(aggregate.reduced_aggregate, loaded, kept), explores, atol=1e-3)


def test_smollm2_reduced_aggregates_equal_explores_full_trace(smollm2) -> None:
    """30 layers multiplied in rollout: still within float16 display precision of the float16 full trace."""
    text = "The cat sat on the mat because the cat was tired"
    _, kept = keep_inputs(smollm2, lambda: summarise(smollm2, text))
    explores = full_trace_aggregates(smollm2, text, float16=True)
    assert_aggregates_equal(partial(aggregate.reduced_aggregate, smollm2, kept), explores, atol=1e-3)


def test_reduced_aggregate_refuses_unknown_names_and_empty_folds(tiny) -> None:
    loaded = tiny("llama")
    with pytest.raises(ValueError, match="Unknown aggregate 'median'"):
        aggregate.reduced_aggregate(loaded, batch_inputs(loaded, ["hi"]).inputs, "median", 0)
    with pytest.raises(ValueError, match="no layer"):
        aggregate.Fold("rollout").result()
