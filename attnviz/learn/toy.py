"""The seeded toy walkthrough: one word per token, d_model 6, two heads of 3, numbers with one decimal."""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from attnviz.learn import variants
from attnviz.learn.walkthrough import PAD_LABEL, Walkthrough, WalkthroughError, attend, mask_for

MAX_TOY_WORDS = 8
TOY_D_MODEL = 6
TOY_HEADS = 2


def _words(sentence: str) -> tuple[str, ...]:
    words = tuple(sentence.split())
    if not words:
        raise WalkthroughError("The sentence is empty: type a few words.")
    if len(words) > MAX_TOY_WORDS:
        raise WalkthroughError(
            f"The toy takes at most {MAX_TOY_WORDS} words and this sentence has {len(words)}: shorten it."
        )
    return words


def _toy_vector(word: str) -> np.ndarray:
    """A word's toy embedding: seeded by the word itself, so the same word always gets the same numbers."""
    rng = np.random.default_rng(zlib.crc32(word.lower().encode()))
    return np.round(rng.uniform(-1, 1, TOY_D_MODEL), 1)


def _toy_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """W_Q, W_K, W_V, W_O [6, 6], seeded, one decimal."""
    rng = np.random.default_rng(2017)
    return tuple(np.round(rng.uniform(-1, 1, (TOY_D_MODEL, TOY_D_MODEL)), 1) for _ in range(4))  # type: ignore[return-value]


def toy(
    sentence: str, mask_choice: str = "causal", scaled: bool = True, temperature: float = 1.0
) -> Walkthrough:
    """The seeded toy: one word per token, d_model 6, two heads of 3, sinusoidal positions."""
    words = _words(sentence)
    allowed, padding = mask_for(mask_choice, len(words))
    tokens = words + (PAD_LABEL,) * padding
    embeddings = np.stack([_toy_vector(w) for w in words] + [np.zeros(TOY_D_MODEL)] * padding)
    positions = np.round(variants.sinusoidal_positions(len(tokens), TOY_D_MODEL).numpy(), 1)
    x = np.round(embeddings + positions, 1)
    w_q, w_k, w_v, w_o = _toy_matrices()
    t = {name: torch.tensor(m, dtype=torch.float64) for name, m in zip("xqkvo", (x, w_q, w_k, w_v, w_o))}
    q = variants.split_heads(t["x"] @ t["q"], TOY_HEADS)
    k = variants.split_heads(t["x"] @ t["k"], TOY_HEADS)
    v = variants.split_heads(t["x"] @ t["v"], TOY_HEADS)
    scale = 1 / math.sqrt(q.shape[-1]) if scaled else 1.0
    scores, weights, heads = attend(q, k, v, allowed, scale, temperature)
    concat = heads.transpose(0, 1).reshape(len(tokens), -1)
    return Walkthrough(
        source="toy", tokens=tokens, padding=padding, mask_choice=mask_choice, mask=allowed, scale=scale,
        temperature=temperature, n_heads=TOY_HEADS, n_kv_heads=TOY_HEADS, embeddings=embeddings, x=x,
        q_raw=q.numpy(), k_raw=k.numpy(), q=q.numpy(), k=k.numpy(), v=v.numpy(), scores=scores.numpy(),
        weights=weights.numpy(), head_outputs=heads.numpy(), concat=concat.numpy(),
        output=(concat @ t["o"]).numpy(), w_q=w_q, w_k=w_k, w_v=w_v, w_o=w_o,
    )  # fmt: skip
