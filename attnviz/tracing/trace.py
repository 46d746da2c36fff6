"""Tracing: run a normal forward pass and keep the attention weights it computed.

:func:`record` is the low-level form (any model inputs, weights per stack with a
batch axis); :func:`trace` and :func:`trace_batch` tokenise text or chat messages
and return one :class:`Trace` per prompt, cropped to its real (unpadded) tokens.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers.utils import ModelOutput

from attnviz.heads.grid import THUMBNAIL, ThumbnailSums
from attnviz.models import devices
from attnviz.models.loading import Kind, LoadedModel
from attnviz.tracing import hooks
from attnviz.tracing.hooks import AttentionCall, Hooks, Site, Stack
from attnviz.tracing.tokens import display_tokens

Messages = Sequence[dict[str, str]]
STACK_LABELS: dict[Stack, str] = {
    "decoder": "decoder self-attention",
    "encoder": "encoder self-attention",
    "cross": "cross-attention",
}
DEFAULT_MAX_TOKENS = 4096
# Float32 scores of one chunk of queries (see hooks.Hooks.chunk_bytes). On a CPU, cache-sized chunks keep
# every step of the softmax in cache and let causal chunks skip the keys they cannot see: a full trace of
# SmolLM2 at 1,024-2,048 tokens took 1.2-1.5x an SDPA forward with 8 MB chunks against 1.5-2.4x with
# 256 MB, a 2,048-token summary 13 s against 28 s (measured). At least MIN_CHUNK_ROWS rows per chunk
# bound the per-chunk overhead of long prompts (8,192 tokens: 163 s with 64-row chunks, 194 s with 14).
# A GPU prefers few large chunks (each chunk is a few kernel launches and a sync).
CPU_CHUNK_BYTES = 8 * 2**20
MIN_CHUNK_ROWS = 64
GPU_CHUNK_BYTES = 256 * 2**20


def chunk_bytes_for(loaded: LoadedModel, inputs: dict[str, torch.Tensor]) -> int:
    """Bytes of float32 scores (and softmax) per chunk of queries for ``inputs`` on the model's device.

    Inputs without token ids (a ViT's pixels) take the cache-sized default.
    """
    if loaded.device.type != "cpu":
        return GPU_CHUNK_BYTES
    ids = inputs.get("input_ids")
    n_tokens = int(ids.shape[-1]) if ids is not None else 0
    return max(CPU_CHUNK_BYTES, MIN_CHUNK_ROWS * loaded.n_heads * n_tokens * 8)


class PromptError(ValueError):
    """The prompt cannot be traced (empty, too long, or the model has no tokenizer)."""


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
    (a prompt traced alone), else None: :func:`attnviz.heads.grid.thumbnail` computes them.
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


def forward(
    loaded: LoadedModel,
    inputs: dict[str, object],
    active: Hooks | None = None,
    *,
    last_logits_only: bool = False,
) -> ModelOutput:
    """One forward pass without KV cache, under the model's lock, with ``active`` hooks applied.

    Inputs move to the device of the model's input embeddings (the first device when spread).
    ``last_logits_only`` skips the [n, vocab] logits (200 MB at 1,024 tokens for SmolLM2)
    when only attention or the next token is wanted.
    """
    extra: dict[str, object] = {"use_cache": False} if hasattr(loaded.model.config, "use_cache") else {}
    if last_logits_only and "logits_to_keep" in inspect.signature(loaded.model.forward).parameters:
        extra["logits_to_keep"] = 1
    inputs = {
        name: value.to(loaded.device) if torch.is_tensor(value) else value for name, value in inputs.items()
    }
    # Token ids (encoder and decoder) size the pass; an image model's pixels are never a small pass.
    ids = [value for name, value in inputs.items() if name.endswith("input_ids") and torch.is_tensor(value)]
    tokens = sum(value.numel() for value in ids) if ids else None
    threads = devices.cpu_threads_for(tokens, loaded.device)
    with loaded.lock, torch.inference_mode(), hooks.active(active), threads:
        return loaded.model(**inputs, **extra)


def _require_tokenizer(loaded: LoadedModel):  # noqa: ANN202 - returns the model's tokenizer type
    if loaded.tokenizer is None:
        raise PromptError(f"'{loaded.info.name}' has no tokenizer, so it cannot trace text.")
    return loaded.tokenizer


def encode(loaded: LoadedModel, text: str | None = None, messages: Messages | None = None) -> list[int]:
    """Token ids of a prompt: plain text, or chat messages through the chat template."""
    tokenizer = _require_tokenizer(loaded)
    with loaded.lock:
        if messages is not None:
            if not loaded.info.has_chat_template:
                raise PromptError(f"'{loaded.info.name}' has no chat template; give plain text instead.")
            if not any(m.get("content", "").strip() for m in messages):
                raise PromptError("The chat message is empty: type something to trace.")
            ids = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "keys"):
                ids = ids["input_ids"]
        else:
            if text is None or not text.strip():
                raise PromptError("The prompt is empty: type something to trace.")
            ids = tokenizer(text)["input_ids"]
    return [int(i) for i in ids]


def context_length(loaded: LoadedModel) -> int | None:
    """The most tokens the model's positions allow (None: no fixed limit, e.g. T5's relative positions)."""
    return getattr(loaded.model.config, "max_position_embeddings", None) or None


def _check_length(loaded: LoadedModel, n: int, max_tokens: int | None) -> None:
    """``max_tokens`` None: up to the model's context length."""
    limits = [m for m in (max_tokens, context_length(loaded)) if m is not None]
    limit = min(limits) if limits else n
    if n > limit:
        raise PromptError(
            f"The prompt has {n} tokens; at most {limit} can be traced with '{loaded.info.name}'."
        )


def _pad(sequences: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def _target_ids(loaded: LoadedModel, target: str | None) -> list[int]:
    start = loaded.model.config.decoder_start_token_id
    if start is None:
        start = loaded.model.generation_config.decoder_start_token_id
    ids = [] if not target else loaded.tokenizer(text_target=target)["input_ids"]
    return [int(start)] + [int(i) for i in ids]


@dataclass(frozen=True)
class Batch:
    """Prompts padded into one batch, ready for the model.

    ``inputs`` holds input_ids and attention_mask [batch, width] (plus decoder_input_ids
    for encoder-decoders); ``encoded`` is each prompt's unpadded ids; ``target_ids`` the
    decoder's ids (empty unless encoder-decoder).
    """

    inputs: dict[str, torch.Tensor]
    encoded: list[list[int]]
    target_ids: list[int]


def batch_inputs(
    loaded: LoadedModel,
    prompts: Sequence[str | Messages],
    *,
    target: str | None = None,
    max_tokens: int | None = DEFAULT_MAX_TOKENS,
) -> Batch:
    """Tokenise prompts (text or chat messages) and pad them on the tokenizer's side into one batch."""
    if not prompts:
        raise PromptError("No prompt given.")
    tokenizer = _require_tokenizer(loaded)
    encoded = [encode(loaded, messages=p) if not isinstance(p, str) else encode(loaded, p) for p in prompts]
    for ids in encoded:
        _check_length(loaded, len(ids), max_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids, attention_mask = _pad(encoded, pad_id, left=tokenizer.padding_side == "left")
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    target_ids: list[int] = []
    if loaded.kind == "encoder-decoder":
        target_ids = _target_ids(loaded, target)
        inputs["decoder_input_ids"] = torch.tensor([target_ids] * len(prompts), dtype=torch.long)
    return Batch(inputs, encoded, target_ids)


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
    tokenizer = _require_tokenizer(loaded)
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


@dataclass(frozen=True)
class StackView:
    """One attention stack of a trace: ``attention`` [layers, heads, queries, keys] with its tokens."""

    stack: Stack
    attention: np.ndarray
    layers: tuple[int, ...]
    query_tokens: tuple[str, ...]
    key_tokens: tuple[str, ...]


def stacks_of(trace: Trace) -> tuple[Stack, ...]:
    """The stacks a trace holds: the decoder's or encoder's self-attention, plus decoder and cross for seq2seq."""
    if trace.kind == "encoder-decoder":
        return ("encoder", "decoder", "cross")
    return ("decoder",) if trace.kind == "decoder" else ("encoder",)


def stack_view(trace: Trace, stack: Stack) -> StackView:
    """Select one stack of ``trace`` (see :func:`stacks_of`)."""
    if stack not in stacks_of(trace):
        raise ValueError(f"A {trace.kind} trace has no '{stack}' attention.")
    if stack == "cross":
        weights, queries, keys = trace.cross_attention, trace.target_tokens, trace.tokens
    elif stack == "decoder" and trace.kind == "encoder-decoder":
        weights, queries, keys = trace.decoder_attention, trace.target_tokens, trace.target_tokens
    else:
        weights, queries, keys = trace.attention, trace.tokens, trace.tokens
    layers = trace.layers if weights.shape[0] == len(trace.layers) else tuple(range(weights.shape[0]))
    return StackView(stack, weights, layers, queries, keys)


def trace_inputs(loaded: LoadedModel, trace: Trace) -> dict[str, torch.Tensor]:
    """Model inputs that reproduce the traced forward pass."""
    ids = torch.tensor([trace.input_ids.tolist()], dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if loaded.kind == "encoder-decoder" and trace.target_ids is not None:
        inputs["decoder_input_ids"] = torch.tensor([trace.target_ids.tolist()], dtype=torch.long)
    return inputs
