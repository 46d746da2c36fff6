"""Head ablation: the model's next-token prediction with chosen heads switched off.

Ablating a head zeroes its attention weights inside our attention function, so its
output is zero for every query; everything downstream is the model's own computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnviz.hooks import Hooks, Site
from attnviz.models.loading import LoadedModel
from attnviz.tracing.forward import forward
from attnviz.tracing.inputs import trace_inputs
from attnviz.tracing.prediction import Prediction, top_next_tokens
from attnviz.tracing.trace import Trace, record


class NoPredictionError(ValueError):
    """The model has no language-model head, so it predicts no next token."""


@dataclass(frozen=True)
class AblationResult:
    """Next-token predictions of the intact model and with ``ablated`` heads switched off.

    ``intact_probs`` [k] is the intact model's probability of each of ``intervened``'s tokens, also
    for tokens outside the intact top-k (so no row of the comparison is left without a number).
    """

    ablated: dict[Site, tuple[int, ...]]
    baseline: Prediction
    intervened: Prediction
    intact_probs: np.ndarray


def last_logits(
    loaded: LoadedModel, trace: Trace, ablate: dict[Site, tuple[int, ...]] | None = None
) -> torch.Tensor:
    """The logits [vocab] after the traced prompt, with ``ablate`` heads zeroed."""
    outputs, _ = record(loaded, trace_inputs(loaded, trace), layers=(), ablate=ablate)
    logits = getattr(outputs, "logits", None)
    if logits is None:
        raise NoPredictionError(
            f"'{loaded.info.name}' is loaded without a language-model head, so it has no next-token prediction."
        )
    return logits[0, -1]


def next_token(
    loaded: LoadedModel, trace: Trace, ablate: dict[Site, tuple[int, ...]] | None = None, k: int = 10
) -> Prediction:
    """Top-``k`` next-token probabilities after the traced prompt, with ``ablate`` heads zeroed."""
    return top_next_tokens(loaded, last_logits(loaded, trace, ablate), k)


def token_logprobs(
    loaded: LoadedModel,
    rows: Sequence[Sequence[int]],
    ablations: Sequence[dict[Site, tuple[int, ...]]],
    first: int = 0,
) -> np.ndarray:
    """[rows, n - 1 - first] log-probability of each token ``ids[t]`` (t > ``first``) given ``ids[:t]``, in one pass
    over rows of equal length n, row r with heads ``ablations[r]`` zeroed.

    Only the logits of the scored positions are computed where the model allows, and the
    normaliser is taken one row at a time: a batch never holds two [rows, n, vocab] tensors.
    """
    tokens = torch.tensor([list(ids) for ids in rows], dtype=torch.long)
    kept = tokens.shape[1] - first
    inputs = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
    outputs = forward(loaded, inputs, Hooks(row_ablate=tuple(ablations)), logits_to_keep=kept)
    logits = getattr(outputs, "logits", None)
    if logits is None:
        raise NoPredictionError(
            f"'{loaded.info.name}' is loaded without a language-model head, so it predicts no token."
        )
    predicting = logits[:, -kept:-1]  # positions first .. n - 2 predict tokens first + 1 .. n - 1
    targets = tokens[:, first + 1 :].to(predicting.device)
    picked = predicting.gather(-1, targets[..., None])[..., 0].float()
    norms = torch.stack([torch.logsumexp(row.float(), dim=-1) for row in predicting])
    return (picked - norms).cpu().numpy()


def ablate_heads(
    loaded: LoadedModel, trace: Trace, ablate: dict[Site, tuple[int, ...]], k: int = 10
) -> AblationResult:
    """Predictions side by side: intact model vs ``ablate`` heads switched off."""
    intact = last_logits(loaded, trace)
    intervened = top_next_tokens(loaded, last_logits(loaded, trace, ablate), k)
    probs = torch.softmax(intact.float(), dim=-1)[torch.as_tensor(intervened.ids, device=intact.device)]
    return AblationResult(
        ablated=ablate,
        baseline=top_next_tokens(loaded, intact, k),
        intervened=intervened,
        intact_probs=probs.cpu().numpy(),
    )
