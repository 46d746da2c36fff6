"""Small computed demonstrations for the Learn page: softmax saturation, position encodings,
KV-cache sizes of MHA/GQA/MQA, and the measured cost of full against sparse attention."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from attnviz.learn import variants
from attnviz.learn.toy import toy
from attnviz.masks import builders as masks


@dataclass(frozen=True)
class Saturation:
    """How peaked softmax gets as d_k grows: mean largest weight [dims] over random rows, unscaled vs scaled."""

    dims: tuple[int, ...]
    unscaled: np.ndarray
    scaled: np.ndarray


def saturation(dims: tuple[int, ...] = (2, 8, 32, 128, 512), keys: int = 8, rows: int = 256) -> Saturation:
    """Mean max softmax weight of random unit-variance q·k rows of ``keys`` keys, with and without 1/√d_k."""
    generator = torch.Generator().manual_seed(0)
    unscaled, scaled = [], []
    for d in dims:
        q, k = torch.randn(rows, 1, d, generator=generator), torch.randn(rows, keys, d, generator=generator)
        scores = (q * k).sum(-1)
        unscaled.append(float(torch.softmax(scores, -1).max(-1).values.mean()))
        scaled.append(float(torch.softmax(scores / math.sqrt(d), -1).max(-1).values.mean()))
    return Saturation(dims, np.array(unscaled), np.array(scaled))


@dataclass(frozen=True)
class CrossAttention:
    """Toy cross-attention: ``weights`` [heads, n, m] of ``queries`` (n tokens) reading ``keys`` (m tokens)."""

    queries: tuple[str, ...]
    keys: tuple[str, ...]
    weights: np.ndarray


def toy_cross_attention(sentence: str, source: str) -> CrossAttention:
    """The toy's heads with queries from ``sentence`` and keys/values from ``source`` (a translator's view)."""
    target, context = toy(sentence, "none"), toy(source, "none")
    matrices = (torch.tensor(m) for m in (target.w_q, target.w_k, target.w_v, target.w_o))
    _, weights = variants.multi_head(
        torch.tensor(target.x), torch.tensor(context.x), *matrices, target.n_heads
    )
    return CrossAttention(target.tokens, context.tokens, weights.numpy())


@dataclass(frozen=True)
class PositionSimilarity:
    """Score between the same vector at positions 0 and ``distance`` [D], normalised to 1 at distance 0."""

    distance: np.ndarray
    rotary: np.ndarray
    sinusoidal: np.ndarray


def position_similarity(d: int = 64, max_distance: int = 128, base: float = 10000.0) -> PositionSimilarity:
    """RoPE: q·k of one seeded vector rotated to two positions; sinusoidal: PE[0]·PE[distance]."""
    distance = torch.arange(max_distance + 1)
    vector = torch.randn(1, d, generator=torch.Generator().manual_seed(0)).expand(len(distance), d)
    rotated = variants.rotary(vector, distance, base)
    rope = (rotated * rotated[:1]).sum(-1)
    table = variants.sinusoidal_positions(max_distance + 1, d)
    sinusoidal = table @ table[0]
    return PositionSimilarity(
        distance.numpy(), (rope / rope[0]).numpy(), (sinusoidal / sinusoidal[0]).numpy()
    )


@dataclass(frozen=True)
class KvCacheRow:
    """KV-cache size of one attention layout for a model's shape at ``tokens`` tokens (16-bit values)."""

    layout: str
    n_kv_heads: int
    bytes: int


def kv_cache_layouts(
    n_layers: int, n_heads: int, n_kv_heads: int, head_dim: int, tokens: int
) -> tuple[KvCacheRow, ...]:
    """Multi-head (every head its own K/V), the model's own layout, and multi-query (one K/V head)."""
    layouts = {
        "multi-head (MHA)": n_heads,
        f"this model ({n_kv_heads} K/V heads)": n_kv_heads,
        "multi-query (MQA)": 1,
    }
    return tuple(
        KvCacheRow(name, kv, variants.kv_cache_bytes(n_layers, kv, head_dim, tokens))
        for name, kv in layouts.items()
    )


# --- measured cost ------------------------------------------------------------------------------

COST_KINDS = ("full", "sliding window", "strided")


def sparse_pattern(kind: str, n: int) -> np.ndarray:
    """[n, n] mask of a cost kind: full causal, a √n sliding window, or √n strided (both O(n√n) entries)."""
    side = max(1, math.isqrt(n))
    if kind == "full":
        return masks.causal(n)
    return masks.sliding_window(n, side) if kind == "sliding window" else masks.strided(n, side)


def gathered_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: np.ndarray
) -> torch.Tensor:
    """Attention that computes only the allowed scores: each query gathers its own keys, [n, kept_max] scores."""
    kept = allowed.sum(axis=1)
    index = np.zeros((len(allowed), int(kept.max())), dtype=np.int64)
    valid = np.arange(index.shape[1])[None, :] < kept[:, None]
    index[valid] = np.nonzero(allowed)[1]
    index_t, valid_t = torch.from_numpy(index), torch.from_numpy(valid)
    scores = torch.einsum("nd,nkd->nk", q, k[index_t]) / math.sqrt(q.shape[-1])
    weights = torch.softmax(scores.masked_fill(~valid_t, float("-inf")), dim=-1)
    return torch.einsum("nk,nkd->nd", weights, v[index_t])


def _attention_of(
    kind: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: np.ndarray
) -> torch.Tensor:
    """Dense masked attention for "full", gathered sparse attention for the others."""
    if kind == "full":
        return variants.scaled_dot_product(q, k, v, allowed)[0]
    return gathered_attention(q, k, v, allowed)


@dataclass(frozen=True)
class Cost:
    """Measured attention cost: ``seconds`` and ``score_bytes`` [kinds, lengths] (best of the repeats)."""

    lengths: tuple[int, ...]
    kinds: tuple[str, ...]
    seconds: np.ndarray
    score_bytes: np.ndarray


def measure_cost(
    lengths: tuple[int, ...] = (128, 256, 512, 1024),
    head_dim: int = 64,
    repeats: int = 7,
    progress: Callable[[float], None] | None = None,
) -> Cost:
    """Time one head's attention at each length: full (dense n×n) and the two sparse kinds (gathered keys only).

    The best of ``repeats`` runs after a warm-up: on a shared machine the minimum is the least disturbed.

    ``score_bytes`` is the float32 score matrix each one really allocates.
    """
    generator = torch.Generator().manual_seed(0)
    seconds = np.zeros((len(COST_KINDS), len(lengths)))
    score_bytes = np.zeros((len(COST_KINDS), len(lengths)), dtype=np.int64)
    total, done = len(COST_KINDS) * len(lengths), 0
    for j, n in enumerate(lengths):
        q, k, v = (torch.randn(n, head_dim, generator=generator) for _ in range(3))
        for i, kind in enumerate(COST_KINDS):
            allowed = sparse_pattern(kind, n)
            _attention_of(
                kind, q, k, v, allowed
            )  # warm-up: first-call allocations are not the algorithm's cost
            timings = []
            for _ in range(repeats):
                start = time.perf_counter()
                _attention_of(kind, q, k, v, allowed)
                timings.append(time.perf_counter() - start)
            seconds[i, j] = min(timings)
            score_bytes[i, j] = 4 * (
                n * n if kind == "full" else len(allowed) * int(allowed.sum(axis=1).max())
            )
            done += 1
            if progress is not None:
                progress(done / total)
    return Cost(tuple(lengths), COST_KINDS, seconds, score_bytes)
