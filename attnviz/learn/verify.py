"""The recomputed first layer checked against the model's own traced weights and attention output.

Both sides run in the model's dtype. In float32 they must agree to 1e-5; bfloat16 and float16 keep
8 and 11 significant bits, so another kernel's summation order (a GPU's) may move a value by a
unit or two in the last place: there the tolerance is two units of 1.0 for the weights, and four
units of the output's largest value for the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnviz.hooks import AttentionCall, Hooks
from attnviz.learn.recompute import first_layer, first_layer_modules, model_ids, padded_ids
from attnviz.models.loading import LoadedModel
from attnviz.tracing.forward import forward
from attnviz.tracing.inputs import prompt_inputs


@dataclass(frozen=True)
class Verification:
    """Recomputed first-layer weights and output against the model's own forward pass (same mask, own scale)."""

    weights_max_abs_diff: float
    output_max_abs_diff: float
    n_heads: int
    dtype: str
    weights_tolerance: float
    output_tolerance: float

    @property
    def passed(self) -> bool:
        return (
            self.weights_max_abs_diff < self.weights_tolerance
            and self.output_max_abs_diff < self.output_tolerance
        )


def tolerances(dtype: torch.dtype, output_scale: float) -> tuple[float, float]:
    """(weights, output) tolerances in ``dtype``; ``output_scale`` is the output's largest |value|."""
    unit = torch.finfo(dtype).eps  # one unit in the last place at 1.0
    return max(1e-5, 2 * unit), max(1e-4, 4 * unit * output_scale)


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

    inputs = prompt_inputs(ids, loaded.device)
    mask = torch.as_tensor(allowed, device=loaded.device)
    hooks = Hooks(record=calls.append, layers=frozenset({0}), mask=mask)
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
    """Recompute the first layer at the model's own scale and compare with its traced weights and attention
    output, both in the model's dtype, within that dtype's tolerance (:func:`tolerances`)."""
    mine = first_layer(loaded, sentence, mask_choice)
    ids = padded_ids(loaded, model_ids(loaded, sentence), mine.padding)
    weights, output = _traced_first_layer(loaded, ids, mine.mask)
    weights_tolerance, output_tolerance = tolerances(loaded.dtype, float(np.abs(output).max()))
    return Verification(
        weights_max_abs_diff=float(np.abs(weights - mine.weights).max()),
        output_max_abs_diff=float(np.abs(output - mine.output).max()),
        n_heads=mine.n_heads,
        dtype=str(loaded.dtype).removeprefix("torch."),
        weights_tolerance=weights_tolerance,
        output_tolerance=output_tolerance,
    )
