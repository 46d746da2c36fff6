"""Tracing: run a normal forward pass and keep the attention weights it computed.

:func:`record` is the low-level form (any model inputs, weights per stack with a
batch axis); :func:`trace` and :func:`trace_batch` tokenise text or chat messages
and return one :class:`Trace` per prompt, cropped to its real (unpadded) tokens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers.utils import ModelOutput

from attnviz import hooks
from attnviz.hooks import AttentionCall, Hooks, Site, Stack
from attnviz.models.loading import Kind, LoadedModel
from attnviz.tracing.forward import chunk_bytes_for, forward
from attnviz.tracing.inputs import DEFAULT_MAX_TOKENS, Messages, batch_inputs, require_tokenizer
from attnviz.tracing.thumbnails import THUMBNAIL, ThumbnailSums
from attnviz.tracing.tokens import display_tokens


@dataclass(frozen=True)
class Recording:
    """Weights recorded in one forward pass, per stack: float arrays [batch, layers, heads, queries, keys]."""

    layers: dict[Stack, tuple[int, ...]]
    heads: tuple[int, ...] | None
    weights: dict[Stack, np.ndarray]
    # Per stack [layers, heads, size, size], reduced during the pass (a batch of one prompt only).
    thumbnails: dict[Stack, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Trace:
    """Attention of one prompt.

    ``attention`` is [layers, heads, n, n] over ``tokens``: the decoder's self-attention
    for decoders, the encoder's for encoders and encoder-decoders. Encoder-decoders
    also carry the decoder side: ``decoder_attention`` [layers, heads, t, t] and
    ``cross_attention`` [layers, heads, t, n] over ``target_tokens``.
    ``layers``/``heads`` say which model layers and heads the first two axes hold.
    ``thumbnails`` [layers, heads, 24, 24] of ``attention``, when reduced during the forward pass
    (a prompt traced alone), else None: :func:`attnviz.tracing.thumbnails.thumbnail` computes them.
    """

    model_name: str
    kind: Kind
    tokens: tuple[str, ...]
    special: tuple[bool, ...]
    input_ids: np.ndarray
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    attention: np.ndarray
    target_tokens: tuple[str, ...] = ()
    target_ids: np.ndarray | None = None
    decoder_attention: np.ndarray | None = None
    cross_attention: np.ndarray | None = None
    thumbnails: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


def record(
    loaded: LoadedModel,
    inputs: dict[str, torch.Tensor],
    *,
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    dtype: torch.dtype = torch.float32,
    ablate: dict[Site, tuple[int, ...]] | None = None,
    mask: torch.Tensor | None = None,
    last_logits_only: bool = False,
    chunk_bytes: int | None = None,
    thumbnails: bool = False,
    run: Callable[[Hooks], object] | None = None,
) -> tuple[ModelOutput, Recording]:
    """Run ``loaded.model(**inputs)`` once, keeping the chosen layers' and heads' weights.

    ``run`` replaces that forward pass (it applies the hooks it is given): e.g. one layer's attention
    recomputed from its kept input (:mod:`attnviz.tracing.layer_inputs`). Each chunk of queries' weights is copied straight into one preallocated host buffer per
    stack (cast to ``dtype`` on the way), so neither a second copy of the whole tensor nor a
    full score matrix of a layer (``chunk_bytes``, default :func:`chunk_bytes_for`) is ever made.
    """
    layer_set = None if layers is None else frozenset(layers)
    head_list = None if heads is None else sorted(set(heads))
    wanted = {
        stack: tuple(i for i in found if layer_set is None or i in layer_set)
        for stack, found in hooks.stack_layers(loaded.model).items()
    }
    buffers: dict[Stack, torch.Tensor] = {}
    filled: dict[Stack, set[int]] = {}
    sums: dict[Site, ThumbnailSums] = {}

    def keep(call: AttentionCall) -> None:
        stack = call.site.stack
        chosen = call.weights if head_list is None else call.weights[:, head_list]
        if thumbnails and chosen.shape[0] == 1:
            if call.site not in sums:
                sums[call.site] = ThumbnailSums(
                    chosen.shape[1], call.n_queries, call.n_keys, THUMBNAIL, chosen.device
                )
            sums[call.site].add(chosen[0].float(), call.query_start)
        if stack not in buffers:
            shape = (chosen.shape[0], len(wanted[stack]), chosen.shape[1], call.n_queries, call.n_keys)
            # Every cell of a recorded layer is written below, so no zero fill first.
            buffers[stack] = torch.empty(shape, dtype=dtype)
        slot = wanted[stack].index(call.site.layer)
        rows = buffers[stack][:, slot, :, call.query_start : call.query_start + chosen.shape[-2]]
        rows[..., : chosen.shape[-1]] = chosen
        rows[..., chosen.shape[-1] :] = 0.0  # keys beyond a chunk's width have weight exactly 0
        filled.setdefault(stack, set()).add(slot)

    active = Hooks(
        record=keep, layers=layer_set, ablate=ablate or {}, mask=mask,
        chunk_bytes=chunk_bytes or chunk_bytes_for(loaded, inputs),
    )  # fmt: skip
    outputs = forward(loaded, inputs, active, last_logits_only=last_logits_only) if run is None else run(active)
    recorded_layers: dict[Stack, tuple[int, ...]] = {}
    weights: dict[Stack, np.ndarray] = {}
    for stack, buffer in buffers.items():
        slots = sorted(filled[stack])
        recorded_layers[stack] = tuple(wanted[stack][i] for i in slots)
        # Layers that never called attention (none in supported families) are dropped, not left empty.
        weights[stack] = (
            buffer.cpu().numpy() if len(slots) == buffer.shape[1] else buffer[:, slots].cpu().numpy()
        )
    thumbs = {
        stack: np.stack([sums[Site(stack, layer)].finish() for layer in recorded_layers[stack]])
        for stack in recorded_layers
        if sums and all(Site(stack, layer) in sums for layer in recorded_layers[stack])
    }
    return outputs, Recording(
        recorded_layers, None if head_list is None else tuple(head_list), weights, thumbs
    )


def trace_batch(
    loaded: LoadedModel,
    prompts: Sequence[str | Messages],
    *,
    target: str | None = None,
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    float16: bool = False,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> list[Trace]:
    """Trace several prompts in one padded batch; each Trace is cropped to its own tokens."""
    batch = batch_inputs(loaded, prompts, target=target, max_tokens=max_tokens)
    tokenizer = require_tokenizer(loaded)
    inputs, encoded, target_ids = batch.inputs, batch.encoded, batch.target_ids
    attention_mask = inputs["attention_mask"]
    _, recording = record(
        loaded,
        inputs,
        layers=layers,
        heads=heads,
        dtype=torch.float16 if float16 else torch.float32,
        last_logits_only=True,
        thumbnails=len(prompts) == 1,  # a batch's rows are cropped to their tokens below: thumbnails differ
    )
    main = loaded.main_stack
    head_axis = recording.heads if recording.heads is not None else tuple(range(loaded.n_heads))
    target_tokens, _ = display_tokens(tokenizer, target_ids) if target_ids else ((), ())
    traces = []
    for row, ids in enumerate(encoded):
        real = attention_mask[row].nonzero().squeeze(-1)
        keep = slice(int(real[0]), int(real[-1]) + 1)  # padding is on one side: a view, not a copy
        tokens, special = display_tokens(tokenizer, ids)
        weights = recording.weights[main][row][:, :, keep, keep]
        decoder = recording.weights.get("decoder") if loaded.kind == "encoder-decoder" else None
        cross = recording.weights.get("cross")
        traces.append(
            Trace(
                model_name=loaded.info.name,
                kind=loaded.kind,
                tokens=tokens,
                special=special,
                input_ids=np.asarray(ids),
                layers=recording.layers[main],
                heads=head_axis,
                attention=np.ascontiguousarray(weights),
                target_tokens=target_tokens,
                target_ids=np.asarray(target_ids) if target_ids else None,
                decoder_attention=None if decoder is None else decoder[row],
                cross_attention=None if cross is None else np.ascontiguousarray(cross[row][..., keep]),
                thumbnails=recording.thumbnails.get(main),
            )
        )
    return traces


def trace(
    loaded: LoadedModel,
    text: str | None = None,
    *,
    messages: Messages | None = None,
    target: str | None = None,
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    float16: bool = False,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> Trace:
    """Trace one prompt (``text``, or chat ``messages``; ``target`` text for encoder-decoders)."""
    prompt: str | Messages = messages if messages is not None else (text or "")
    return trace_batch(
        loaded, [prompt], target=target, layers=layers, heads=heads, float16=float16, max_tokens=max_tokens
    )[0]


