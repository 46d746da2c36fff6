"""Head statistics: one number per layer × head that says what kind of head it is.

All functions take attention weights [layers, heads, queries, keys] (rows sum to 1)
and return [layers, heads] arrays, averaged over query positions. The induction score
is measured on a sequence of random tokens repeated twice (Olsson et al. 2022): an
induction head at the second copy's token ``i`` attends to the token that followed
``i``'s first occurrence, ``period - 1`` positions back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import prompt_inputs
from attnviz.tracing.trace import record

STATISTICS = {
    "entropy": "Entropy of each query's attention in bits, averaged over queries (low: focused head).",
    "distance": "Mean distance |query − key| in tokens, weighted by attention (high: long-range head).",
    "first_token": "Mean attention on the first token (the 'attention sink').",
    "previous_token": "Mean attention from each token to the token just before it.",
    "induction": "Mean attention to the token after the previous occurrence, on repeated random tokens.",
}


@dataclass(frozen=True)
class HeadStats:
    """Per-head statistics, each [layers, heads]; ``layers``/``heads`` name the axes' model indices.

    Position-based statistics (distance, previous token, induction) are None where they have
    no meaning, e.g. for cross-attention, whose queries and keys are different sequences.
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    entropy: np.ndarray
    first_token: np.ndarray
    distance: np.ndarray | None = None
    previous_token: np.ndarray | None = None
    induction: np.ndarray | None = None

    def rows(self) -> list[dict[str, float | int]]:
        """One record per head (for tables and CSV/JSON export)."""
        names = [name for name in STATISTICS if getattr(self, name) is not None]
        return [
            {"layer": layer, "head": head, **{name: float(getattr(self, name)[li, hi]) for name in names}}
            for li, layer in enumerate(self.layers)
            for hi, head in enumerate(self.heads)
        ]


def _as_float(attention: np.ndarray) -> np.ndarray:
    return np.asarray(attention, dtype=np.float32)


def entropy(attention: np.ndarray) -> np.ndarray:
    """Mean over queries of -Σ p log2 p: [layers, heads, q, k] -> [layers, heads]."""
    out = np.empty(attention.shape[:2], dtype=np.float64)
    for layer in range(attention.shape[0]):  # one layer at a time keeps the temporary small
        p = _as_float(attention[layer])
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
        out[layer] = -terms.sum(-1).mean(-1)
    return out


def _offsets(n_queries: int, n_keys: int) -> np.ndarray:
    """|query position − key position| [q, k]; queries are the last ``n_queries`` positions."""
    query_positions = np.arange(n_keys - n_queries, n_keys)[:, None]
    return np.abs(query_positions - np.arange(n_keys)[None, :]).astype(np.float32)


def mean_distance(attention: np.ndarray) -> np.ndarray:
    """Attention-weighted mean |query − key| in tokens: [layers, heads, q, k] -> [layers, heads]."""
    offsets = _offsets(*attention.shape[-2:])
    out = np.empty(attention.shape[:2], dtype=np.float64)
    for layer in range(attention.shape[0]):
        out[layer] = (_as_float(attention[layer]) * offsets).sum(-1).mean(-1)
    return out


def first_token_mass(attention: np.ndarray) -> np.ndarray:
    """Mean weight on key 0 over all queries: [layers, heads, q, k] -> [layers, heads]."""
    return _as_float(attention[..., 0]).mean(-1).astype(np.float64)


def diagonal_score(attention: np.ndarray, offset: int, first_query: int = 0) -> np.ndarray:
    """Mean weight on key ``query - offset`` over queries ``first_query..`` with such a key."""
    n = attention.shape[-1]
    queries = np.arange(max(first_query, offset), n)
    if queries.size == 0:
        return np.zeros(attention.shape[:2], dtype=np.float64)
    return _as_float(attention[..., queries, queries - offset]).mean(-1).astype(np.float64)


def previous_token_score(attention: np.ndarray) -> np.ndarray:
    """Mean weight from each token to the one before it: [layers, heads, n, n] -> [layers, heads]."""
    return diagonal_score(attention, offset=1)


def induction_score(attention: np.ndarray, period: int, start: int = 0) -> np.ndarray:
    """Induction score on a sequence whose tokens ``start..`` repeat with ``period``: [l, h, n, n] -> [l, h].

    A query at position i in the second copy should attend to i - period + 1, the token
    that followed its earlier occurrence.
    """
    return diagonal_score(attention, offset=period - 1, first_query=start + period)


def head_stats(
    attention: np.ndarray, layers: tuple[int, ...], heads: tuple[int, ...], self_attention: bool = True
) -> HeadStats:
    """Entropy and first-token mass of every head, plus distance and previous-token score for self-attention."""
    return HeadStats(
        layers=layers,
        heads=heads,
        entropy=entropy(attention),
        first_token=first_token_mass(attention),
        distance=mean_distance(attention) if self_attention else None,
        previous_token=previous_token_score(attention) if self_attention else None,
    )


def repeated_random_tokens(loaded: LoadedModel, period: int = 50, seed: int = 0) -> tuple[list[int], int]:
    """``period`` random ordinary token ids repeated twice, after BOS if the model uses one; (ids, start)."""
    tokenizer = loaded.tokenizer
    special = set(tokenizer.all_special_ids) if tokenizer is not None else set()
    vocab = loaded.info.vocab_size
    generator = np.random.default_rng(seed)
    candidates = generator.permutation(vocab)
    chosen = [int(i) for i in candidates[~np.isin(candidates, list(special))][:period]]
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else None
    prefix = [int(bos)] if bos is not None else []
    return prefix + chosen + chosen, len(prefix)


def induction_scores(loaded: LoadedModel, period: int = 50, seed: int = 0) -> np.ndarray:
    """Induction score [layers, heads] of every head of the model's main self-attention stack."""
    ids, start = repeated_random_tokens(loaded, period, seed)
    inputs = prompt_inputs(ids)
    stack = loaded.main_stack
    if loaded.kind == "encoder-decoder":
        start_id = loaded.model.config.decoder_start_token_id
        inputs["decoder_input_ids"] = torch.tensor([[0 if start_id is None else int(start_id)]])
    _, recording = record(loaded, inputs)
    return induction_score(recording.weights[stack][0], period, start)


def bootstrap(values: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, 2.5th, 97.5th percentile of the mean) over axis 0 of ``values`` [samples, ...], resampling samples.

    NaN everywhere when there are no samples.
    """
    if len(values) == 0:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan, nan
    picks = np.random.default_rng(seed).integers(0, len(values), size=(n, len(values)))
    low, high = np.percentile(values[picks].mean(axis=1), [2.5, 97.5], axis=0)
    return values.mean(axis=0), low, high
