"""Aggregates of many heads: means, attention rollout, and value-norm weighting.

- :func:`layer_mean` / :func:`model_mean`: plain averages of attention maps.
- :func:`rollout`: Abnar & Zuidema (2020): each layer's head-mean plus the residual
  (0.5·A + 0.5·I, rows renormalised), multiplied through the layers, so entry (q, k)
  estimates how much token k's input flows into position q's output; optionally
  renormalised :func:`without_sink`, since an attention sink makes plain rollout ≈ 1.0 on the first token.
- :func:`value_norms` / :func:`norm_weighted`: Kobayashi et al. (2020), "Attention is
  not only a weight": weight α_qk times ‖f_h(x_k)‖, the norm of token k's value vector
  after the head's slice of the output projection, i.e. the size of what is really mixed in.
- :func:`reduced_aggregate`: any of these for the main stack without the full maps, from a pass that keeps
  each layer's mean over heads (of α, or of α·‖f_h(x_k)‖) and folds it in as the layer ends (:class:`Fold`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from attnviz import hooks
from attnviz.hooks import AttentionCall, Hooks, Site, Stack
from attnviz.models import devices
from attnviz.models.loading import LoadedModel
from attnviz.tracing.forward import chunk_bytes_for, forward
from attnviz.tracing.inputs import trace_inputs
from attnviz.tracing.layer_inputs import LayerInputs, replay
from attnviz.tracing.stacks import StackView
from attnviz.tracing.trace import Trace


class UnsupportedModelError(ValueError):
    """The model's attention layout is not one this aggregate knows how to read."""


def layer_mean(attention: np.ndarray, layer: int) -> np.ndarray:
    """Mean over the heads of one layer: [layers, heads, q, k] -> [q, k]."""
    return np.asarray(attention[layer], dtype=np.float32).mean(0)


def model_mean(attention: np.ndarray) -> np.ndarray:
    """Mean over every layer and head: [layers, heads, q, k] -> [q, k]."""
    return _folded("model mean", (layer_mean(attention, layer) for layer in range(attention.shape[0])))


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
    means = (layer_mean(attention, layer) for layer in range(attention.shape[0]))
    return _folded("rollout" if sink else "rollout without sink", means, residual)


ROLLOUTS = ("rollout", "rollout without sink")
ONE_LAYER = ("layer mean", "value-norm weighted")


class Fold:
    """Aggregate ``name`` of head-mean maps [q, k] handed in one layer at a time, in layer order, keeping one
    [q, k] state: the running sum for "model mean", the flow so far for rollouts, else the one layer's map."""

    def __init__(self, name: str, residual: float = 0.5) -> None:
        self.name, self.residual = name, residual
        self._state: np.ndarray | None = None
        self._count = 0

    def add(self, mean: np.ndarray) -> None:
        """Fold in the next layer's mean over heads."""
        mean = np.asarray(mean, dtype=np.float32)
        if self.name == "model mean":
            self._state = mean.astype(np.float64) if self._state is None else self._state + mean
        elif self.name in ROLLOUTS:
            mixed = (1 - self.residual) * mean + self.residual * np.eye(len(mean), dtype=np.float32)
            mixed /= mixed.sum(-1, keepdims=True)
            self._state = mixed if self._state is None else mixed @ self._state
        else:
            self._state = mean
        self._count += 1

    def result(self) -> np.ndarray:
        """The aggregate of the layers folded so far, float32 [q, k]."""
        if self._state is None:
            raise ValueError(f"no layer was folded into the {self.name}")
        if self.name == "model mean":
            return (self._state / self._count).astype(np.float32)
        return without_sink(self._state) if self.name == "rollout without sink" else self._state


def _folded(name: str, means: Iterable[np.ndarray], residual: float = 0.5) -> np.ndarray:
    fold = Fold(name, residual)
    for mean in means:
        fold.add(mean)
    return fold.result()


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


def _check(name: str, stack: Stack) -> None:
    """Refuse an unknown aggregate, or a rollout of non-square (cross-attention) maps."""
    if name not in AGGREGATES:
        raise ValueError(f"Unknown aggregate '{name}'; choose one of {', '.join(AGGREGATES)}.")
    if name in ROLLOUTS and stack == "cross":
        raise UnsupportedModelError(
            "Rollout multiplies square self-attention maps; pick a self-attention stack."
        )


def aggregate_map(
    view: StackView, name: str, layer_index: int, norms: ValueNorms | None = None
) -> np.ndarray:
    """The [queries, keys] map of aggregate ``name`` (a key of AGGREGATES) for one stack, from its full maps."""
    _check(name, view.stack)
    if name == "layer mean":
        return layer_mean(view.attention, layer_index)
    if name == "model mean":
        return model_mean(view.attention)
    if name in ROLLOUTS:
        return rollout(view.attention, sink=name == "rollout")
    if norms is None:
        raise ValueError("value-norm weighting needs the value norms of the stack")
    return norm_weighted(view.attention[layer_index], norms.norms[layer_index]).mean(0)


class _HeadMeans:
    """Recorder: each recorded layer's mean over heads of α (of α·‖f_h(x_k)‖ when ``weighted``), written one
    chunk of queries at a time into one [queries, keys] float32 buffer on the layer's device; a finished layer
    goes to ``done`` on the host and its buffer is dropped, so no map per head outlives its chunk."""

    def __init__(
        self, model: nn.Module, stack: Stack, weighted: bool, done: Callable[[np.ndarray], None]
    ) -> None:
        self.model, self.stack, self.weighted, self.done = model, stack, weighted, done
        self._running: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def __call__(self, call: AttentionCall) -> None:
        if call.site.stack != self.stack:
            return
        layer, p = call.site.layer, call.weights[0].float()  # [heads, rows, width]
        if layer not in self._running:
            norms = None
            if self.weighted:
                norms = head_output_norms(call.value[0].float(), output_projection(self.model, call.module))
            total = torch.zeros((call.n_queries, call.n_keys), dtype=torch.float32, device=p.device)
            self._running[layer] = (total, norms)
        total, norms = self._running[layer]
        rows, width = p.shape[1], p.shape[2]
        if norms is not None:
            p = p * norms[:, None, :width]
        total[call.query_start : call.query_start + rows, :width] = p.mean(0)
        if call.query_start + rows == call.n_queries:  # the layer's last chunk
            self.done(self._running.pop(layer)[0].cpu().numpy())


def reduced_aggregate(
    loaded: LoadedModel, source: LayerInputs | dict[str, torch.Tensor], name: str, layer_index: int
) -> np.ndarray:
    """Aggregate ``name`` of the main stack (``layer_index`` into its layers) without any full map.

    ``source`` is the prompt's kept layer inputs (:mod:`attnviz.tracing.layer_inputs`: only the layers read
    are recomputed, no forward pass) or its model inputs (one forward pass). Either way each layer read is
    reduced to its head mean as its queries pass and folded in when it ends: the pass keeps two [n, n] maps
    (float32 buffer, float32 or float64 fold state), 8-12 MB at 1,024 tokens against 0.6 GB of full float16
    maps for SmolLM2. Measured at 720 SmolLM2 tokens: all five aggregates from kept inputs raised peak memory
    by 17 MB, a float16 full trace and its value-norm pass by 848 MB. Float32 throughout, not float16: what is
    kept is n², not layers × heads × n², and rollout's products need it. Equal to :func:`aggregate_map` of a
    float32 full trace up to float32 rounding.
    """
    stack = loaded.main_stack
    _check(name, stack)
    if isinstance(source, LayerInputs):
        layers, inputs = source.layers, {"input_ids": torch.as_tensor(source.input_ids)[None]}
    else:
        layers, inputs = hooks.stack_layers(loaded.model)[stack], source
    read = (layers[layer_index],) if name in ONE_LAYER else tuple(layers)  # a layer's map, or all in order
    fold = Fold(name)
    recorder = _HeadMeans(loaded.model, stack, name == "value-norm weighted", fold.add)
    active = Hooks(record=recorder, layers=frozenset(read), chunk_bytes=chunk_bytes_for(loaded, inputs))
    if isinstance(source, LayerInputs):
        replay(loaded, source, read)(active)
    else:
        forward(loaded, inputs, active, last_logits_only=True)
    return fold.result()
