"""Aggregates of many heads: means, attention rollout, and value-norm weighting.

- :func:`layer_mean` / :func:`model_mean`: plain averages of attention maps.
- :func:`rollout`: Abnar & Zuidema (2020): each layer's head-mean plus the residual
  (0.5·A + 0.5·I, rows renormalised), multiplied through the layers, so entry (q, k)
  estimates how much token k's input flows into position q's output; optionally
  renormalised :func:`without_sink`, since an attention sink makes plain rollout ≈ 1.0 on the first token.
- :func:`value_norms` / :func:`norm_weighted`: Kobayashi et al. (2020), "Attention is
  not only a weight": weight α_qk times ‖f_h(x_k)‖, the norm of token k's value vector
  after the head's slice of the output projection, i.e. the size of what is really mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attnviz.hooks import AttentionCall, Hooks, Site, Stack
from attnviz.models import devices
from attnviz.models.loading import LoadedModel
from attnviz.tracing.forward import forward
from attnviz.tracing.inputs import trace_inputs
from attnviz.tracing.stacks import StackView
from attnviz.tracing.trace import Trace


class UnsupportedModelError(ValueError):
    """The model's attention layout is not one this aggregate knows how to read."""


def layer_mean(attention: np.ndarray, layer: int) -> np.ndarray:
    """Mean over the heads of one layer: [layers, heads, q, k] -> [q, k]."""
    return np.asarray(attention[layer], dtype=np.float32).mean(0)


def model_mean(attention: np.ndarray) -> np.ndarray:
    """Mean over every layer and head: [layers, heads, q, k] -> [q, k]."""
    total = np.zeros(attention.shape[-2:], dtype=np.float64)
    for layer in range(attention.shape[0]):
        total += np.asarray(attention[layer], dtype=np.float32).sum(0)
    return (total / (attention.shape[0] * attention.shape[1])).astype(np.float32)


def without_sink(attention: np.ndarray) -> np.ndarray:
    """[..., n, n] attention without the first key's column for every query after the first, rows renormalised.

    The first token is an "attention sink" in many models: heads with nothing to read park their
    weight there, so it says little about which tokens are read. Query 0 keeps its row (in a causal
    model it sees only itself).
    """
    kept = np.array(attention, dtype=np.float32)
    kept[..., 1:, 0] = 0.0
    kept[..., 1:, :] /= np.clip(kept[..., 1:, :].sum(-1, keepdims=True), 1e-12, None)
    return kept


def sink_share(flow: np.ndarray) -> float:
    """The mean weight a [q, k] map puts on the first token, over the queries after the first (0 for one token)."""
    return float(np.asarray(flow)[1:, 0].mean()) if len(flow) > 1 else 0.0


def rollout(attention: np.ndarray, residual: float = 0.5, sink: bool = True) -> np.ndarray:
    """Attention rollout through all layers of a square stack: [layers, heads, n, n] -> [n, n].

    With ``sink=False`` the result is taken :func:`without_sink`: how the flow that does not end on
    the first token divides among the others, instead of weight near 1.0 on the first token for every
    query. (Removing the sink inside every layer instead only moves it: on SmolLM2 the second token
    then takes 0.98 of the last query's flow; renormalising at the end gives it 0.34.)
    """
    n = attention.shape[-1]
    identity = np.eye(n, dtype=np.float32)
    flow = identity
    for layer in range(attention.shape[0]):
        mixed = (1 - residual) * np.asarray(attention[layer], dtype=np.float32).mean(0) + residual * identity
        mixed /= mixed.sum(-1, keepdims=True)
        flow = mixed @ flow
    return flow if sink else without_sink(flow)


@dataclass(frozen=True)
class ValueNorms:
    """‖f_h(x_k)‖ per layer, head and key token: ``norms`` [layers, heads, keys] for ``stack``."""

    stack: Stack
    layers: tuple[int, ...]
    norms: np.ndarray


def _find_linear(module: nn.Module, names: tuple[str, ...]) -> nn.Linear | None:
    """The first of the dotted submodule ``names`` of ``module`` that is a Linear layer."""
    for name in names:
        try:
            candidate = module.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(candidate, nn.Linear):
            return candidate
    return None


# Output projections inside the attention module (Llama/Mistral/Qwen/Gemma/Phi-3 o_proj,
# BART/OPT/Marian out_proj, DistilBERT out_lin, GPT-NeoX dense, T5 o).
_OWN_OUTPUTS = ("o_proj", "out_proj", "out_lin", "dense", "o")
# BERT-style: the projection sits in the parent's ``output`` block next to ``self``.
_SIBLING_OUTPUTS = ("output.dense",)


def output_projection(model: nn.Module, attention_module: nn.Module) -> nn.Linear:
    """The linear layer that maps the concatenated heads back to the residual stream."""
    own = _find_linear(attention_module, _OWN_OUTPUTS)
    if own is not None:
        return own
    for name, module in model.named_modules():
        if module is attention_module and "." in name:
            parent = model.get_submodule(name.rsplit(".", 1)[0])
            sibling = _find_linear(parent, _SIBLING_OUTPUTS)
            if sibling is not None:
                return sibling
    raise UnsupportedModelError(
        f"Value-norm weighting does not know where {type(attention_module).__name__} keeps its output "
        "projection (supported: Llama-style o_proj, BART/OPT out_proj, BERT attention.output.dense, "
        "DistilBERT out_lin, GPT-NeoX dense, T5 o)."
    )


def head_output_norms(value: torch.Tensor, projection: nn.Linear) -> torch.Tensor:
    """‖v_k^h W_O^h‖ for value [heads, keys, head_dim] and W_O [d_model, heads·head_dim] -> [heads, keys]."""
    heads, _, head_dim = value.shape
    weight = projection.weight.detach().to(value.dtype)
    if weight.shape[1] != heads * head_dim:
        raise UnsupportedModelError(
            f"Output projection takes {weight.shape[1]} inputs, not heads × head_dim = {heads * head_dim}."
        )
    per_head = weight.reshape(weight.shape[0], heads, head_dim).permute(1, 2, 0)  # [heads, head_dim, d_model]
    return torch.linalg.vector_norm(torch.bmm(value, per_head), dim=-1)


def value_norms(loaded: LoadedModel, trace: Trace, stack: Stack | None = None) -> ValueNorms:
    """Run the traced prompt again, recording ‖f_h(x_k)‖ for every head of ``stack``."""
    stack = stack or loaded.main_stack
    found: dict[Site, torch.Tensor] = {}
    problems: list[UnsupportedModelError] = []

    def keep(call: AttentionCall) -> None:
        if call.site.stack != stack or problems:
            return
        try:
            found[call.site] = head_output_norms(
                call.value[0].float(), output_projection(loaded.model, call.module)
            )
        except UnsupportedModelError as error:
            problems.append(error)

    forward(loaded, trace_inputs(loaded, trace), Hooks(record=keep))
    if problems:
        raise problems[0]
    sites = sorted(found, key=lambda s: s.layer)
    norms = devices.stack_across([found[s] for s in sites]).cpu().numpy()
    return ValueNorms(stack, tuple(s.layer for s in sites), norms)


def norm_weighted(attention: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """α_qk · ‖f_h(x_k)‖: attention [..., q, k] times norms [..., k] -> [..., q, k]."""
    return np.asarray(attention, dtype=np.float32) * np.asarray(norms, dtype=np.float32)[..., None, :]


AGGREGATES = {
    "layer mean": "Mean over the heads of the chosen layer.",
    "model mean": "Mean over every layer and head.",
    "rollout": "Attention rollout (Abnar & Zuidema 2020): head means plus residual, multiplied through the layers.",
    "rollout without sink": "Rollout with the first token's column removed and each query's row renormalised "
    "over the other tokens: how the flow that does not end on the attention sink divides among them.",
    "value-norm weighted": "Mean over the chosen layer's heads of α·‖f(x)‖ (Kobayashi et al. 2020).",
}


def aggregate_map(
    view: StackView, name: str, layer_index: int, norms: ValueNorms | None = None
) -> np.ndarray:
    """The [queries, keys] map of aggregate ``name`` (a key of AGGREGATES) for one stack."""
    if name == "layer mean":
        return layer_mean(view.attention, layer_index)
    if name == "model mean":
        return model_mean(view.attention)
    if name == "rollout":
        if view.stack == "cross":
            raise UnsupportedModelError(
                "Rollout multiplies square self-attention maps; pick a self-attention stack."
            )
        return rollout(view.attention)
    if name == "rollout without sink":
        if view.stack == "cross":
            raise UnsupportedModelError(
                "Rollout multiplies square self-attention maps; pick a self-attention stack."
            )
        return rollout(view.attention, sink=False)
    if name == "value-norm weighted":
        if norms is None:
            raise ValueError("value-norm weighting needs the value norms of the stack")
        return norm_weighted(view.attention[layer_index], norms.norms[layer_index]).mean(0)
    raise ValueError(f"Unknown aggregate '{name}'; choose one of {', '.join(AGGREGATES)}.")
