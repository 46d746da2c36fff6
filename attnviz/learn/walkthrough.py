"""The step-by-step walkthrough of one attention layer: its result type, mask choices and shared maths.

:mod:`attnviz.learn.toy` builds a seeded toy, :mod:`attnviz.learn.recompute` recomputes a loaded
decoder's first layer from its own modules, :mod:`attnviz.learn.verify` checks that recomputation
against the traced model, and :mod:`attnviz.learn.steps` turns a :class:`Walkthrough` into the
labelled matrices the Learn page shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from attnviz.learn import variants
from attnviz.masks import builders as masks

MASK_CHOICES = ("none", "causal", "sliding window", "strided", "padding")
PAD_TOKENS = 2
PAD_LABEL = "[pad]"
SLIDING_WINDOW = 3


class WalkthroughError(ValueError):
    """The sentence or model cannot be walked through; the message says why and what to do."""


@dataclass(frozen=True)
class Walkthrough:
    """One attention layer computed step by step over ``tokens`` (n of them, padding included).

    ``embeddings`` [n, d_model] are the token vectors, ``x`` [n, d_model] the layer's input
    (toy: embeddings + sinusoidal positions; model: after its input norm). ``q_raw`` [H, n, d_h]
    is Q before rotary embedding, ``q`` [H, n, d_h] after; ``k``/``v`` [KV, n, d_h] per key/value
    head. ``scores`` and ``weights`` are [H, n, n]; ``head_outputs`` [H, n, d_h]; ``concat``
    [n, H·d_h]; ``output`` [n, d_model]. ``w_q``..``w_o`` are the toy's matrices (None for models).
    """

    source: str
    tokens: tuple[str, ...]
    padding: int
    mask_choice: str
    mask: np.ndarray
    scale: float
    temperature: float
    n_heads: int
    n_kv_heads: int
    embeddings: np.ndarray
    x: np.ndarray
    q_raw: np.ndarray
    k_raw: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    head_outputs: np.ndarray
    concat: np.ndarray
    output: np.ndarray
    w_q: np.ndarray | None = None
    w_k: np.ndarray | None = None
    w_v: np.ndarray | None = None
    w_o: np.ndarray | None = None

    @property
    def rotary(self) -> bool:
        return self.w_q is None

    @property
    def head_dim(self) -> int:
        return self.q.shape[-1]

    @property
    def scaled(self) -> np.ndarray:
        """Scores times scale / temperature, [H, n, n]."""
        return self.scores * (self.scale / self.temperature)

    @property
    def masked(self) -> np.ndarray:
        """Scaled scores with blocked entries set to -inf, [H, n, n]."""
        return np.where(self.mask[None], self.scaled, -np.inf)

    def kv_head(self, head: int) -> int:
        return variants.kv_head_of(head, self.n_heads, self.n_kv_heads)


def mask_for(choice: str, n_real: int) -> tuple[np.ndarray, int]:
    """The [n, n] allowed matrix of a mask choice and how many padding tokens it appends."""
    if choice == "padding":
        allowed = masks.causal(n_real + PAD_TOKENS)
        allowed[:, n_real:] = False  # nobody may read a padding token
        return allowed, PAD_TOKENS
    builders = {
        "none": masks.bidirectional,
        "causal": masks.causal,
        "sliding window": lambda n: masks.sliding_window(n, SLIDING_WINDOW),
        "strided": lambda n: masks.strided(n, max(1, math.isqrt(n))),
    }
    if choice not in builders:
        raise WalkthroughError(f"Unknown mask '{choice}'; choose one of: {', '.join(MASK_CHOICES)}.")
    return builders[choice](n_real), 0


def attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: np.ndarray, scale: float, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores [H, n, n], weights [H, n, n] and head outputs [H, n, d_h], K/V shared by groups of query heads.

    As in the model's own attention, scores stay in the activations' dtype, the softmax runs in at
    least float32, and the weights go back to that dtype before they meet the values.
    """
    if temperature <= 0:
        raise WalkthroughError("The temperature must be positive.")
    groups = q.shape[0] // k.shape[0]
    k_shared, v_shared = k.repeat_interleave(groups, dim=0), v.repeat_interleave(groups, dim=0)
    scores = q @ k_shared.transpose(-1, -2)
    softmax_dtype = torch.promote_types(scores.dtype, torch.float32)
    weights = variants.masked_softmax((scores * (scale / temperature)).to(softmax_dtype), mask).to(q.dtype)
    return scores, weights, weights @ v_shared
