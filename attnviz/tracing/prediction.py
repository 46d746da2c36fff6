"""Next-token predictions: the top-k tokens a run ends on, as pages show them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnviz.models.loading import LoadedModel
from attnviz.tracing.tokens import display_each


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
    ids = top.indices.cpu().numpy()
    with loaded.lock:
        tokens = display_each(loaded.tokenizer, ids.tolist())
    return Prediction(ids=ids, tokens=tokens, probs=top.values.cpu().numpy())


@dataclass(frozen=True)
class RankChange:
    """One token of a top-k list next to where it stood in another: ranks from 1, None when absent."""

    token: str
    probability: float
    rank: int
    other_rank: int | None
    other_probability: float | None

    @property
    def mark(self) -> str:
        """'new' when the token was not in the other top-k, '▲ n' / '▼ n' ranks moved, '=' unchanged."""
        if self.other_rank is None:
            return "new"
        moved = self.other_rank - self.rank
        return "=" if moved == 0 else f"▲ {moved}" if moved > 0 else f"▼ {-moved}"


def rank_changes(
    prediction: Prediction, reference: Prediction, reference_probs: np.ndarray | None = None
) -> tuple[RankChange, ...]:
    """Each of ``prediction``'s top-k tokens with its rank and probability in ``reference`` (matched by id).

    ``reference_probs`` [k], the reference run's probability of each of ``prediction``'s tokens, fills
    in the probability of tokens outside the reference top-k (else None).
    """
    where = {int(token_id): rank for rank, token_id in enumerate(reference.ids.tolist())}
    changes = []
    for rank, token_id in enumerate(prediction.ids.tolist()):
        before = where.get(int(token_id))
        changes.append(
            RankChange(
                token=prediction.tokens[rank],
                probability=float(prediction.probs[rank]),
                rank=rank + 1,
                other_rank=None if before is None else before + 1,
                other_probability=float(reference_probs[rank])
                if reference_probs is not None
                else None
                if before is None
                else float(reference.probs[before]),
            )
        )
    return tuple(changes)
