"""Head ablation: the model's next-token prediction with chosen heads switched off.

Ablating a head zeroes its attention weights inside our attention function, so its
output is zero for every query; everything downstream is the model's own computation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnviz.models.loading import LoadedModel
from attnviz.tracing.hooks import Hooks, Site
from attnviz.tracing.prediction import Prediction, top_next_tokens
from attnviz.tracing.trace import Trace, forward, record, trace_inputs


class NoPredictionError(ValueError):
    """The model has no language-model head, so it predicts no next token."""


@dataclass(frozen=True)
class AblationResult:
    """Next-token predictions of the intact model and with ``ablated`` heads switched off."""

    ablated: dict[Site, tuple[int, ...]]
    baseline: Prediction
    intervened: Prediction


def next_token(
    loaded: LoadedModel, trace: Trace, ablate: dict[Site, tuple[int, ...]] | None = None, k: int = 10
) -> Prediction:
    """Top-``k`` next-token probabilities after the traced prompt, with ``ablate`` heads zeroed."""
    outputs, _ = record(loaded, trace_inputs(loaded, trace), layers=(), ablate=ablate)
    logits = getattr(outputs, "logits", None)
    if logits is None:
        raise NoPredictionError(
            f"'{loaded.info.name}' is loaded without a language-model head, so it has no next-token prediction."
        )
    return top_next_tokens(loaded, logits[0, -1], k)


def token_logprobs(
    loaded: LoadedModel, ids: Sequence[int], ablate: dict[Site, tuple[int, ...]] | None = None
) -> np.ndarray:
    """[n - 1] log-probability of each token ``ids[t]`` given ``ids[:t]``, with ``ablate`` heads zeroed (one pass)."""
    tokens = torch.tensor([list(ids)])
    inputs = {"input_ids": tokens, "attention_mask": torch.ones_like(tokens)}
    logits = getattr(forward(loaded, inputs, Hooks(ablate=ablate or {})), "logits", None)
    if logits is None:
        raise NoPredictionError(
            f"'{loaded.info.name}' is loaded without a language-model head, so it predicts no token."
        )
    logprobs = torch.log_softmax(logits[0, :-1].float(), dim=-1)
    targets = tokens[0, 1:].to(logprobs.device)
    return logprobs[torch.arange(len(targets), device=logprobs.device), targets].cpu().numpy()


def ablate_heads(
    loaded: LoadedModel, trace: Trace, ablate: dict[Site, tuple[int, ...]], k: int = 10
) -> AblationResult:
    """Predictions side by side: intact model vs ``ablate`` heads switched off."""
    return AblationResult(
        ablated=ablate,
        baseline=next_token(loaded, trace, None, k),
        intervened=next_token(loaded, trace, ablate, k),
    )
