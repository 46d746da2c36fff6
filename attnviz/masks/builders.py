"""Attention masks as boolean matrices: the textbook patterns, transformers' own, and their cost.

A mask here is a boolean [n, n] *allowed* matrix: ``allowed[q, k]`` is True when query
``q`` may attend to key ``k``. Builders cover causal, bidirectional, sliding window,
Child et al. 2019 strided, prefix-LM and block-diagonal. Custom rules are in
:mod:`attnviz.masks.rules`; reading and applying masks in real runs in :mod:`attnviz.masks.runs`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoConfig
from transformers.masking_utils import create_sliding_window_causal_mask

MAX_MASK_TOKENS = 128


# --- builders ---------------------------------------------------------------------------------


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Query and key index grids, [n, 1] and [1, n], for vectorised mask rules."""
    index = np.arange(n)
    return index[:, None], index[None, :]


def causal(n: int) -> np.ndarray:
    """Lower-triangular [n, n]: each token sees itself and the past (decoders)."""
    q, k = grid(n)
    return k <= q


def bidirectional(n: int) -> np.ndarray:
    """All-True [n, n]: every token sees every token (encoders)."""
    return np.ones((n, n), dtype=bool)


def sliding_window(n: int, window: int) -> np.ndarray:
    """Causal band [n, n] of ``window`` keys per query, itself included (Mistral/Gemma 2 semantics)."""
    q, k = grid(n)
    return (k <= q) & (k > q - window)


def strided(n: int, stride: int) -> np.ndarray:
    """Child et al. 2019 strided pattern [n, n]: the last ``stride`` keys plus every ``stride``-th key before.

    With ``stride`` ≈ √n each query keeps O(√n) keys, so the mask holds O(n√n) entries.
    """
    q, k = grid(n)
    distance = q - k
    return (distance >= 0) & ((distance <= stride) | (distance % stride == 0))


def prefix_lm(n: int, prefix: int) -> np.ndarray:
    """Prefix-LM [n, n]: bidirectional among the first ``prefix`` tokens, causal after."""
    q, k = grid(n)
    return (k <= q) | ((q < prefix) & (k < prefix))


def block_diagonal(segments: np.ndarray, within: Callable[[int], np.ndarray] = causal) -> np.ndarray:
    """[n, n] mask letting tokens attend only inside their own segment (``segments`` [n] ids).

    ``within`` gives the pattern inside the sequence (``causal`` by default, or ``bidirectional``).
    """
    segments = np.asarray(segments)
    return within(len(segments)) & (segments[:, None] == segments[None, :])


def segments_after(tokens: Sequence[str], separator: str) -> np.ndarray:
    """Segment id [n] of each token: a new segment starts after every token containing ``separator``."""
    ends = np.array([separator in token for token in tokens], dtype=int)
    return np.concatenate([[0], np.cumsum(ends)[:-1]]).astype(int) if len(tokens) else np.zeros(0, dtype=int)


def pattern_name(allowed: np.ndarray) -> str:
    """Name the textbook pattern a [queries, keys] mask equals, e.g. 'causal' or 'sliding window of 4'."""
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.all():
        return "bidirectional (everything allowed)"
    rows, cols = allowed.shape
    if rows != cols:
        return "custom"
    if np.array_equal(allowed, causal(rows)):
        return "causal"
    window = int(allowed.sum(axis=1).max())
    if np.array_equal(allowed, sliding_window(rows, window)):
        return f"sliding window of {window}"
    return "custom"


# --- transformers' own masks ------------------------------------------------------------------


def transformers_sliding_window(n: int, window: int, family: str = "mistral") -> np.ndarray:
    """[n, n] allowed matrix that transformers' own mask code builds for a ``family`` config with this window.

    Only a configuration is made (no weights): the same ``create_sliding_window_causal_mask``
    call Mistral and Gemma 2 layers use, with eager attention (0 allowed, dtype-min blocked).
    """
    config = AutoConfig.for_model(family, sliding_window=window)
    config._attn_implementation = "eager"
    mask = create_sliding_window_causal_mask(
        config=config,
        inputs_embeds=torch.zeros(1, n, 1),
        attention_mask=torch.ones(1, n, dtype=torch.long),
        cache=None,
    )
    return allowed_from_additive(mask)[0]


def allowed_from_additive(additive: torch.Tensor) -> np.ndarray:
    """Boolean [batch, queries, keys] from an additive [batch, 1, queries, keys] mask (0 kept, dtype-min blocked)."""
    blocked = torch.finfo(additive.dtype).min / 2
    return (additive[:, 0] > blocked).cpu().numpy()


# --- counting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskStats:
    """Cost side of a mask: scores computed (kept entries) against the full n² of dense attention."""

    n: int
    kept: int
    future: int

    @property
    def full(self) -> int:
        return self.n * self.n

    @property
    def density(self) -> float:
        return self.kept / self.full if self.full else 0.0


def mask_stats(allowed: np.ndarray) -> MaskStats:
    """Kept entries of an [n, n] mask and how many of them look at a later token (k > q)."""
    allowed = np.asarray(allowed, dtype=bool)
    n = allowed.shape[0]
    return MaskStats(n=n, kept=int(allowed.sum()), future=int(np.triu(allowed, 1).sum()))


