"""attnviz.learn.variants against references: torch's SDPA and MultiheadAttention, transformers' Llama RoPE, hand maths."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

from attnviz.learn import variants
from attnviz.masks import builders as masks


def _qkv(
    n: int = 7, m: int = 7, d: int = 8, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=generator), torch.randn(m, d, generator=generator),
            torch.randn(m, d, generator=generator))  # fmt: skip


@pytest.mark.parametrize("mask", [None, masks.causal(7), masks.sliding_window(7, 3), masks.strided(7, 2)])
def test_scaled_dot_product_matches_torch_sdpa(mask: np.ndarray | None) -> None:
    q, k, v = _qkv()
    output, weights = variants.scaled_dot_product(q, k, v, mask)
    reference = functional.scaled_dot_product_attention(
        q, k, v, attn_mask=None if mask is None else torch.as_tensor(mask)
    )
    torch.testing.assert_close(output, reference)
    assert torch.allclose(weights.sum(-1), torch.ones(7))
    if mask is not None:
        assert (weights[torch.as_tensor(~mask)] == 0).all()


def test_causal_matches_torch_is_causal_and_scale() -> None:
    q, k, v = _qkv(d=16)
    output, _ = variants.scaled_dot_product(q, k, v, masks.causal(7), scale=0.3)
    torch.testing.assert_close(
        output, functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=0.3)
    )


def test_dot_product_is_unscaled() -> None:
    q, k, v = _qkv()
    output, weights = variants.dot_product(q, k, v)
    torch.testing.assert_close(weights, torch.softmax(q @ k.T, dim=-1))
    torch.testing.assert_close(output, functional.scaled_dot_product_attention(q, k, v, scale=1.0))


def test_fully_masked_row_gives_zeros_not_nan() -> None:
    q, k, v = _qkv(n=2, m=3)
    mask = np.array([[False, False, False], [True, False, True]])
    output, weights = variants.scaled_dot_product(q, k, v, mask)
    assert torch.equal(weights[0], torch.zeros(3)) and torch.equal(output[0], torch.zeros(8))
    assert not torch.isnan(output).any()


def test_additive_matches_hand_computed_example() -> None:
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    v = torch.tensor([[10.0], [20.0]])
    w_q = torch.tensor([[1.0], [0.0]])  # attention size 1: q W_q = q[0]
    w_k = torch.tensor([[0.0], [1.0]])  # k W_k = k[1]
    w_v_a = torch.tensor([2.0])
    output, weights = variants.additive(q, k, v, w_q, w_k, w_v_a)
    s0, s1 = 2 * math.tanh(1 + 1), 2 * math.tanh(1 - 1)  # = 1.9281, 0
    p0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))
    torch.testing.assert_close(weights, torch.tensor([[p0, 1 - p0]]))
    torch.testing.assert_close(output, torch.tensor([[10 * p0 + 20 * (1 - p0)]]))
    _, masked = variants.additive(q, k, v, w_q, w_k, w_v_a, mask=np.array([[False, True]]))
    torch.testing.assert_close(masked, torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize("cross", [False, True])
def test_multi_head_matches_torch_multihead_attention(cross: bool) -> None:
    torch.manual_seed(1)
    d_model, heads = 12, 3
    reference = torch.nn.MultiheadAttention(d_model, heads, bias=False).eval()
    x = torch.randn(5, d_model)
    context = torch.randn(9, d_model) if cross else x
    w_q, w_k, w_v = (w.T for w in reference.in_proj_weight.detach().chunk(3))
    w_o = reference.out_proj.weight.detach().T
    mask = None if cross else masks.causal(5)
    output, weights = variants.multi_head(x, context, w_q, w_k, w_v, w_o, heads, mask=mask)
    with torch.no_grad():
        expected, expected_weights = reference(
            x, context, context, attn_mask=None if mask is None else torch.as_tensor(~mask),
            average_attn_weights=False,
        )  # fmt: skip
    assert weights.shape == (heads, 5, context.shape[0])
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(weights, expected_weights)


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_grouped_and_multi_query_equal_repeated_keys_and_values(n_kv_heads: int) -> None:
    torch.manual_seed(2)
    d_model, heads, head_dim = 16, 4, 4
    x = torch.randn(6, d_model)
    w_q, w_o = torch.randn(d_model, heads * head_dim), torch.randn(heads * head_dim, d_model)
    w_k, w_v = torch.randn(d_model, n_kv_heads * head_dim), torch.randn(d_model, n_kv_heads * head_dim)
    output, weights = variants.multi_head(x, x, w_q, w_k, w_v, w_o, heads, n_kv_heads, masks.causal(6))
    # The same model written as plain MHA: each query head gets its own copy of its group's K/V columns.
    owner = [variants.kv_head_of(h, heads, n_kv_heads) for h in range(heads)]
    columns = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim) for g in owner])
    full, full_weights = variants.multi_head(
        x, x, w_q, w_k[:, columns], w_v[:, columns], w_o, heads, None, masks.causal(6)
    )
    torch.testing.assert_close(output, full)
    torch.testing.assert_close(weights, full_weights)
    assert owner == ([0, 0, 0, 0] if n_kv_heads == 1 else [0, 0, 1, 1])


def test_uneven_grouping_is_refused() -> None:
    x = torch.zeros(2, 6)
    with pytest.raises(ValueError, match="evenly"):
        variants.multi_head(
            x, x, torch.zeros(6, 6), torch.zeros(6, 4), torch.zeros(6, 4), torch.zeros(6, 6), 3, 2
        )


def test_sinusoidal_positions_formula() -> None:
    table = variants.sinusoidal_positions(50, 16)
    pos, i = 7, 3
    assert table.shape == (50, 16)
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)), abs=1e-6)
    assert torch.equal(table[0, 0::2], torch.zeros(8)) and torch.equal(table[0, 1::2], torch.ones(8))


@pytest.mark.parametrize("base", [10000.0, 100000.0])
def test_rotary_matches_transformers_llama(base: float) -> None:
    config = LlamaConfig(hidden_size=32, num_attention_heads=2, rope_theta=base, max_position_embeddings=64)
    rope = LlamaRotaryEmbedding(config)
    torch.manual_seed(3)
    q, k = torch.randn(1, 2, 10, 16), torch.randn(1, 2, 10, 16)
    positions = torch.arange(3, 13)
    cos, sin = rope(q, positions[None])
    expected_q, expected_k = apply_rotary_pos_emb(q, k, cos, sin)
    torch.testing.assert_close(variants.rotary(q, positions, base), expected_q)
    torch.testing.assert_close(variants.rotary(k, positions.numpy(), base), expected_k)


def test_rotary_dot_product_depends_only_on_distance() -> None:
    q, k, _ = _qkv(n=1, m=1, d=8)
    at = lambda i, j: (variants.rotary(q, [i]) @ variants.rotary(k, [j]).T).item()
    assert at(5, 2) == pytest.approx(at(13, 10), abs=1e-4)


def test_kv_cache_bytes_counts_keys_and_values() -> None:
    assert variants.kv_cache_bytes(30, 3, 64, 1000) == 2 * 30 * 3 * 64 * 1000 * 2
    assert variants.kv_cache_bytes(1, 1, 1, 1, bytes_per_value=4) == 8


@pytest.mark.parametrize("block", [1, 3, 4, 7, 20])
@pytest.mark.parametrize("mask", [None, masks.causal(7), masks.sliding_window(7, 2)])
def test_online_softmax_equals_full_softmax(block: int, mask: np.ndarray | None) -> None:
    q, k, v = _qkv(m=7)
    output, states = variants.online_softmax_attention(q, k, v, block, mask)
    expected, _ = variants.scaled_dot_product(q, k, v, mask)
    torch.testing.assert_close(output, expected)
    assert len(states) == math.ceil(7 / block) and states[-1].stop == 7
    scores = q @ k.T / math.sqrt(8)
    if mask is not None:
        scores = scores.masked_fill(~torch.as_tensor(mask), float("-inf"))
    torch.testing.assert_close(states[-1].running_max, scores.max(-1).values)
    torch.testing.assert_close(
        states[-1].running_sum, torch.exp(scores - scores.max(-1).values[:, None]).sum(-1)
    )


def test_online_softmax_rejects_empty_tiles() -> None:
    q, k, v = _qkv()
    with pytest.raises(ValueError):
        variants.online_softmax_attention(q, k, v, 0)
