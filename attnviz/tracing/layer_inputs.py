"""Each layer's attention input, kept from one pass, so that one head is recomputed from its layer alone.

Opening a head of a long prompt used to re-run the whole forward pass (42-49 s at 3,000 tokens
for SmolLM2 on two CPU cores). :func:`keep_inputs` wraps any one-prompt pass (the summary's) and
keeps what each attention module of the main stack was called with: the hidden states it read,
in the model's dtype (3,000 × 576 × 30 × 4 bytes ≈ 207 MB for SmolLM2 in float32), and its
other arguments (position embeddings, mask), which the layers share. :func:`trace_head` then
runs only that layer's attention module on them, through our attention function, recording one
head, which equals the same head of a full trace bit for bit: every weight shown is the one the
model computed. ``half=True`` halves the memory by keeping float16 inputs, at about 1e-3 of a
weight (measured in ``tests/test_layer_inputs.py``); the app does not use it.

Encoder-decoders keep nothing (their decoder and cross-attention read the encoder's output, and
T5 passes a position bias from layer to layer): their heads take the full pass.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from attnviz import hooks
from attnviz.hooks import Hooks, Stack
from attnviz.models import devices
from attnviz.models.loading import LoadedModel
from attnviz.tracing.tokens import display_tokens
from attnviz.tracing.trace import Recording, Trace, record

T = TypeVar("T")


@dataclass(frozen=True)
class LayerCall:
    """One attention module's call: ``hidden`` [1, n, d_model] stored as kept (``dtype`` is what it read),
    given as the first positional argument (``positional``) or as ``hidden_states=``; ``args``/``kwargs``
    are the call's other arguments, the very objects the pass used (shared by every layer)."""

    module: nn.Module
    hidden: torch.Tensor
    dtype: torch.dtype
    positional: bool
    args: tuple[object, ...]
    kwargs: dict[str, object]

    def replay(self) -> object:
        """Call the module again on the kept input (under whatever hooks are active)."""
        hidden = self.hidden.to(self.dtype)
        if self.positional:
            return self.module(hidden, *self.args, **self.kwargs)
        return self.module(*self.args, hidden_states=hidden, **self.kwargs)


@dataclass(frozen=True)
class LayerInputs:
    """The attention inputs of every layer of one prompt's main ``stack``: ``input_ids`` [n], ``calls`` by layer."""

    stack: Stack
    input_ids: np.ndarray
    calls: Mapping[int, LayerCall]

    @property
    def layers(self) -> tuple[int, ...]:
        return tuple(sorted(self.calls))

    @property
    def nbytes(self) -> int:
        """Bytes of the tensors kept, each shared tensor counted once."""
        seen: dict[tuple[int, torch.device], int] = {}
        for call in self.calls.values():
            for tensor in _tensors((call.hidden, call.args, call.kwargs)):
                seen[(tensor.untyped_storage().data_ptr(), tensor.device)] = tensor.untyped_storage().nbytes()
        return sum(seen.values())


def _tensors(value: object) -> Iterator[torch.Tensor]:
    """The tensors inside nested tuples, lists and dicts."""
    if torch.is_tensor(value):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def attention_modules(loaded: LoadedModel) -> dict[int, nn.Module]:
    """The module of each main-stack layer that computes its attention; empty where that is unclear.

    Attention modules are named ``*Attention`` in the families transformers routes through its
    attention interface; the innermost one of a layer is the one that calls it (BERT's
    ``BertSelfAttention`` inside ``BertAttention``). Encoder-decoders give none (see the module doc).
    """
    if loaded.kind == "encoder-decoder":
        return {}
    found: dict[str, tuple[int, nn.Module]] = {}
    for name, module in loaded.model.named_modules():
        site = hooks.site_of_name(name, loaded.kind == "encoder", False)
        if (
            type(module).__name__.endswith("Attention")
            and site is not None
            and site.stack == loaded.main_stack
        ):
            found[name] = (site.layer, module)
    innermost = [found[name] for name in found if not any(other.startswith(name + ".") for other in found)]
    layers = [layer for layer, _ in innermost]
    if len(set(layers)) != len(layers) or set(layers) != set(loaded.main_layers):
        return {}
    return dict(innermost)


def _kept(
    module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object], half: bool
) -> LayerCall | None:
    """What one attention call read, its hidden states narrowed to float16 when ``half`` and lossless in range."""
    positional = bool(args) and torch.is_tensor(args[0])
    hidden = args[0] if positional else kwargs.get("hidden_states")
    if not torch.is_tensor(hidden) or hidden.ndim != 3 or hidden.shape[0] != 1:
        return None
    stored = hidden
    if half and hidden.dtype == torch.float32:
        narrow = hidden.to(torch.float16)
        # Values beyond float16's range (±65,504) would become inf: keep such a layer as it is.
        stored = narrow if bool(torch.isfinite(narrow).all()) else hidden
    others = {name: value for name, value in kwargs.items() if positional or name != "hidden_states"}
    return LayerCall(module, stored, hidden.dtype, positional, args[1:] if positional else args, others)


def keep_inputs(
    loaded: LoadedModel, run: Callable[[], T], *, half: bool = False
) -> tuple[T, LayerInputs | None]:
    """``run()`` (one forward pass of one prompt, e.g. a summary) with every main-stack layer's attention
    input kept; None when the model's attention modules are not found or the pass was not one prompt.

    The capture hooks live on the shared model only while its lock is held, so no other pass sees them.
    """
    modules = attention_modules(loaded)
    if not modules:
        return run(), None
    calls: dict[int, list[LayerCall | None]] = {}
    ids: list[object] = []

    def take_ids(_: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        ids.append(kwargs.get("input_ids", args[0] if args else None))

    def taker(layer: int) -> Callable[[nn.Module, tuple[object, ...], dict[str, object]], None]:
        def take(module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
            calls.setdefault(layer, []).append(_kept(module, args, kwargs, half))

        return take

    with loaded.lock:
        handles = [loaded.model.register_forward_pre_hook(take_ids, with_kwargs=True)]
        handles += [
            m.register_forward_pre_hook(taker(layer), with_kwargs=True) for layer, m in modules.items()
        ]
        try:
            result = run()
        finally:
            for handle in handles:
                handle.remove()
    one_prompt = len(ids) == 1 and torch.is_tensor(ids[0]) and ids[0].shape[0] == 1
    kept = {layer: found[0] for layer, found in calls.items() if len(found) == 1 and found[0] is not None}
    if not one_prompt or set(kept) != set(modules):
        return result, None
    return result, LayerInputs(loaded.main_stack, ids[0][0].cpu().numpy(), kept)


def replay(loaded: LoadedModel, kept: LayerInputs, layers: Iterable[int]) -> Callable[[Hooks], None]:
    """A pass (as :func:`attnviz.tracing.trace.record`'s ``run``) that recomputes only the attention of
    ``layers``, in that order, from their kept inputs, under the hooks it is given."""
    calls = [kept.calls[layer] for layer in layers]

    def run(active: Hooks) -> None:
        # As many threads as the full pass.
        threads = devices.cpu_threads_for(len(kept.input_ids), loaded.device)
        with loaded.lock, torch.inference_mode(), hooks.active(active), threads:
            for call in calls:
                call.replay()

    return run


def trace_head(loaded: LoadedModel, kept: LayerInputs, layer: int, head: int) -> Trace:
    """One head's full map (a Trace with ``attention`` [1, 1, n, n] float32), recomputed from its layer's
    kept input alone: the layer's attention module, in the same chunks of queries as a full trace."""
    ids = torch.as_tensor(kept.input_ids)[None]
    run = replay(loaded, kept, [layer])
    _, recording = record(loaded, {"input_ids": ids}, layers=[layer], heads=[head], run=run)
    return head_of_recording(loaded, kept.stack, kept.input_ids, recording, head)


def head_of_recording(
    loaded: LoadedModel, stack: Stack, input_ids: np.ndarray, recording: Recording, head: int
) -> Trace:
    """The Trace of the one head (and layer) ``recording`` kept of ``stack``, over the prompt ``input_ids``."""
    if stack not in recording.weights:
        raise RuntimeError("the pass computed no attention of the layer asked for")
    tokens, special = display_tokens(loaded.tokenizer, input_ids.tolist())
    return Trace(
        model_name=loaded.info.name,
        kind=loaded.kind,
        tokens=tokens,
        special=special,
        input_ids=input_ids,
        layers=recording.layers[stack],
        heads=(head,),
        attention=recording.weights[stack][0],
    )
