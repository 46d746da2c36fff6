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
from attnviz.tracing.inputs import prompt_inputs, trace_inputs
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
    loaded: LoadedModel, ids: Sequence[int], ablate: dict[Site, tuple[int, ...]] | None = None
) -> np.ndarray:
    """[n - 1] log-probability of each token ``ids[t]`` given ``ids[:t]``, with ``ablate`` heads zeroed (one pass)."""
    inputs = prompt_inputs(ids)
    tokens = inputs["input_ids"]
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
    intact = last_logits(loaded, trace)
    intervened = top_next_tokens(loaded, last_logits(loaded, trace, ablate), k)
    probs = torch.softmax(intact.float(), dim=-1)[torch.as_tensor(intervened.ids, device=intact.device)]
    return AblationResult(
        ablated=ablate,
        baseline=top_next_tokens(loaded, intact, k),
        intervened=intervened,
        intact_probs=probs.cpu().numpy(),
    )
