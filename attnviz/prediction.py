"""Next-token predictions: the top-k tokens a run ends on, as pages show them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnviz.loading import LoadedModel
from attnviz.tokens import display_each


@dataclass(frozen=True)
class Prediction:
    """Top-k next tokens: ``ids`` [k], readable ``tokens``, and ``probs`` [k] (softmax of the last logits)."""

    ids: np.ndarray
    tokens: tuple[str, ...]
    probs: np.ndarray


def top_next_tokens(loaded: LoadedModel, last_logits: torch.Tensor, k: int) -> Prediction:
    """The ``k`` most probable next tokens from one position's logits [vocab]."""
    probs = torch.softmax(last_logits.float(), dim=-1)
    top = torch.topk(probs, k=min(k, probs.shape[-1]))
    ids = top.indices.numpy()
    with loaded.lock:
        tokens = display_each(loaded.tokenizer, ids.tolist())
    return Prediction(ids=ids, tokens=tokens, probs=top.values.numpy())
