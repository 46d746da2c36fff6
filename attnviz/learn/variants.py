"""Attention variants as plain torch functions: the textbook maths the Learn page draws.

Every attention function returns ``(output, weights)``. Queries are rows: ``q`` [..., n, d],
``k`` [..., m, d], ``v`` [..., m, d_v]; a boolean ``mask`` [n, m] is True where query ``i`` may
attend to key ``j`` (build it with :mod:`attnviz.masks.builders`). A query row with no allowed key
gets all-zero weights (and a zero output) instead of NaNs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

Mask = torch.Tensor | np.ndarray | None


def _mask_tensor(mask: Mask, device: torch.device) -> torch.Tensor | None:
    """A boolean torch mask on ``device`` (numpy masks from attnviz.masks.builders are accepted)."""
    if mask is None:
        return None
    return torch.as_tensor(mask, dtype=torch.bool, device=device)


def masked_softmax(scores: torch.Tensor, mask: Mask = None) -> torch.Tensor:
    """Row softmax of ``scores`` [..., n, m] over allowed keys; rows with no allowed key become zeros."""
    allowed = _mask_tensor(mask, scores.device)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.nan_to_num(weights, nan=0.0)


def dot_product(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unscaled dot-product attention: softmax(q kᵀ) v; weights [..., n, m], output [..., n, d_v]."""
    return scaled_dot_product(q, k, v, mask, scale=1.0)


def scaled_dot_product(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Mask = None, scale: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention: softmax(q kᵀ · scale) v, scale 1/√d by default (Vaswani et al. 2017)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    weights = masked_softmax(q @ k.transpose(-1, -2) * scale, mask)
    return weights @ v, weights


def additive(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v_a: torch.Tensor,
    mask: Mask = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bahdanau attention: score[i, j] = w_v_a · tanh(q_i W_q + k_j W_k).

    ``q`` [n, d_q], ``k`` [m, d_k], ``w_q`` [d_q, a], ``w_k`` [d_k, a], ``w_v_a`` [a].
    """
    hidden = torch.tanh((q @ w_q)[..., :, None, :] + (k @ w_k)[..., None, :, :])  # [n, m, a]
    weights = masked_softmax(hidden @ w_v_a, mask)
    return weights @ v, weights


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[n, heads·d] -> [heads, n, d]."""
    n, width = x.shape
    return x.reshape(n, n_heads, width // n_heads).transpose(0, 1)


def kv_head_of(head: int, n_heads: int, n_kv_heads: int) -> int:
    """The key/value head query head ``head`` reads under grouped-query attention."""
    if n_heads % n_kv_heads:
        raise ValueError(f"{n_heads} query heads cannot share {n_kv_heads} key/value heads evenly")
    return head // (n_heads // n_kv_heads)


def multi_head(
    x: torch.Tensor,
    context: torch.Tensor,
    w_q: torch.Tensor,
    w_k: torch.Tensor,
    w_v: torch.Tensor,
    w_o: torch.Tensor,
    n_heads: int,
    n_kv_heads: int | None = None,
    mask: Mask = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head attention of ``x`` [n, d_model] over ``context`` [m, d_model] (``context`` is ``x`` for self-attention).

    ``w_q`` [d_model, n_heads·d_h], ``w_k``/``w_v`` [d_model, n_kv_heads·d_h], ``w_o`` [n_heads·d_h, d_model],
    applied as ``x @ w``. ``n_kv_heads`` < ``n_heads`` is grouped-query attention (1: multi-query).
    Returns output [n, d_model] and weights [n_heads, n, m].
    """
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    groups = n_heads // n_kv_heads
    kv_head_of(0, n_heads, n_kv_heads)  # validates the grouping
    q = split_heads(x @ w_q, n_heads)
    k = split_heads(context @ w_k, n_kv_heads).repeat_interleave(groups, dim=0)
    v = split_heads(context @ w_v, n_kv_heads).repeat_interleave(groups, dim=0)
    heads, weights = scaled_dot_product(q, k, v, mask)
    concat = heads.transpose(0, 1).reshape(x.shape[0], -1)
    return concat @ w_o, weights


def sinusoidal_positions(n: int, d: int) -> torch.Tensor:
    """Vaswani et al.'s position encodings [n, d]: sin on even columns, cos on odd, base 10000."""
    position = torch.arange(n, dtype=torch.float64)[:, None]
    frequency = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
    table = torch.zeros(n, d, dtype=torch.float64)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency[: d // 2])
    return table.float()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[x1, x2] -> [-x2, x1] over the last axis (Llama's half-split pairing of dimensions)."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary(x: torch.Tensor, positions: torch.Tensor | np.ndarray, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding of ``x`` [..., n, d] at integer ``positions`` [n] (Llama's rotate_half convention)."""
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float, device=x.device) / d))
    angles = torch.as_tensor(positions, dtype=torch.float, device=x.device)[:, None] * inv_freq
    emb = torch.cat((angles, angles), dim=-1)
    return x * emb.cos().to(x.dtype) + rotate_half(x) * emb.sin().to(x.dtype)


def kv_cache_bytes(
    n_layers: int, n_kv_heads: int, head_dim: int, tokens: int, bytes_per_value: int = 2
) -> int:
    """Bytes a KV cache holds for ``tokens`` tokens: keys and values of every layer and key/value head."""
    return 2 * n_layers * n_kv_heads * head_dim * tokens * bytes_per_value


@dataclass(frozen=True)
class TileState:
    """Online-softmax state after reading keys ``start:stop``.

    ``scores`` [n, stop-start] are this tile's scaled scores (-inf where masked); ``running_max`` [n]
    and ``running_sum`` [n] are m and ℓ so far; ``output`` [n, d_v] the unnormalised running output.
    """

    start: int
    stop: int
    scores: torch.Tensor
    running_max: torch.Tensor
    running_sum: torch.Tensor
    output: torch.Tensor


def online_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    block: int,
    mask: Mask = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, tuple[TileState, ...]]:
    """FlashAttention's idea: attention over key tiles of ``block`` with a running max and sum, never the n×m matrix.

    ``q`` [n, d], ``k`` [m, d], ``v`` [m, d_v]; output [n, d_v] equals :func:`scaled_dot_product`.
    """
    if block < 1:
        raise ValueError("block must be at least 1")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    allowed = _mask_tensor(mask, q.device)
    n = q.shape[0]
    running_max = torch.full((n,), float("-inf"), dtype=q.dtype, device=q.device)
    running_sum = torch.zeros(n, dtype=q.dtype, device=q.device)
    output = torch.zeros(n, v.shape[-1], dtype=q.dtype, device=q.device)
    states = []
    for start in range(0, k.shape[0], block):
        stop = min(start + block, k.shape[0])
        scores = q @ k[start:stop].T * scale
        if allowed is not None:
            scores = scores.masked_fill(~allowed[:, start:stop], float("-inf"))
        new_max = torch.maximum(running_max, scores.max(dim=-1).values)
        # Rows that have seen no allowed key yet keep max -inf: shift by 0 there to avoid inf - inf.
        shift = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
        correction = torch.exp(running_max - shift)
        exp_scores = torch.exp(scores - shift[:, None])
        running_sum = running_sum * correction + exp_scores.sum(dim=-1)
        output = output * correction[:, None] + exp_scores @ v[start:stop]
        running_max = new_max
        states.append(TileState(start, stop, scores, running_max, running_sum, output))
    final = output / torch.where(running_sum > 0, running_sum, torch.ones_like(running_sum))[:, None]
    return final, tuple(states)
