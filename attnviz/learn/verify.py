"""The recomputed first layer checked against the model's own traced weights and attention output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnviz.learn.recompute import first_layer, first_layer_modules, model_ids, padded_ids
from attnviz.models.loading import LoadedModel
from attnviz.tracing.hooks import AttentionCall, Hooks
from attnviz.tracing.trace import forward


@dataclass(frozen=True)
class Verification:
    """Recomputed first-layer weights and output against the model's own forward pass (same mask, own scale)."""

    weights_max_abs_diff: float
    output_max_abs_diff: float
    n_heads: int

    @property
    def passed(self) -> bool:
        return self.weights_max_abs_diff < 1e-5 and self.output_max_abs_diff < 1e-4


class _FirstLayerDone(Exception):
    """Raised after the first attention layer ran: later layers cannot change its weights."""


def _traced_first_layer(
    loaded: LoadedModel, ids: list[int], allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The model's own first-layer weights [H, n, n] and attention output [n, d_model] under ``allowed``.

    A normal forward pass with our recording hooks, stopped once layer 0's attention has returned.
    """
    _, layer = first_layer_modules(loaded)
    calls: list[AttentionCall] = []
    outputs: list[torch.Tensor] = []

    def stop(_module: torch.nn.Module, _inputs: object, output: tuple[torch.Tensor, ...]) -> None:
        outputs.append(output[0])
        raise _FirstLayerDone

    inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long)}
    hooks = Hooks(record=calls.append, layers=frozenset({0}), mask=torch.as_tensor(allowed))
    with loaded.lock:  # the stop hook sits on a shared module: no other session may run meanwhile
        handle = layer.self_attn.register_forward_hook(stop)
        try:
            forward(loaded, inputs, hooks)
        except _FirstLayerDone:
            pass
        finally:
            handle.remove()
    return calls[0].weights[0].float().cpu().numpy(), outputs[0][0].float().cpu().numpy()


def verify(loaded: LoadedModel, sentence: str, mask_choice: str = "causal") -> Verification:
    """Recompute the first layer at the model's own scale and compare with its traced weights and attention output."""
    mine = first_layer(loaded, sentence, mask_choice)
    ids = padded_ids(loaded, model_ids(loaded, sentence), mine.padding)
    weights, output = _traced_first_layer(loaded, ids, mine.mask)
    return Verification(
        weights_max_abs_diff=float(np.abs(weights - mine.weights).max()),
        output_max_abs_diff=float(np.abs(output - mine.output).max()),
        n_heads=mine.n_heads,
    )
