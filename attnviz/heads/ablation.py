"""Head ablation: the model's next-token prediction with chosen heads switched off.

Ablating a head zeroes its attention weights inside our attention function, so its
output is zero for every query; everything downstream is the model's own computation.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnviz.hooks import Site
from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import trace_inputs
from attnviz.tracing.prediction import Prediction, top_next_tokens
from attnviz.tracing.trace import Trace, record


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


def ablate_heads(
    loaded: LoadedModel, trace: Trace, ablate: dict[Site, tuple[int, ...]], k: int = 10
) -> AblationResult:
    """Predictions side by side: intact model vs ``ablate`` heads switched off."""
    return AblationResult(
        ablated=ablate,
        baseline=next_token(loaded, trace, None, k),
        intervened=next_token(loaded, trace, ablate, k),
    )
