"""Masks in real runs of a model: read the masks it applied, apply one of ours, and compare.

Masks are applied through our attention function (``Hooks(mask=...)``), never by editing
model code; :func:`compare_mask` reports what a mask does to the model's attention and output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnviz.hooks import AttentionCall, Hooks, Stack
from attnviz.masks.builders import MAX_MASK_TOKENS, allowed_from_additive
from attnviz.models.loading import LoadedModel
from attnviz.tracing.forward import forward
from attnviz.tracing.inputs import Messages, PromptError, batch_inputs, encode
from attnviz.tracing.prediction import Prediction, top_next_tokens
from attnviz.tracing.tokens import display_tokens
from attnviz.tracing.trace import record

# --- masks the model really used --------------------------------------------------------------


@dataclass(frozen=True)
class MaskGroup:
    """Layers of one stack that applied the same mask: ``allowed`` is bool [batch, queries, keys]."""

    stack: Stack
    layers: tuple[int, ...]
    allowed: np.ndarray


@dataclass(frozen=True)
class ModelMasks:
    """The masks of one (possibly padded) forward pass, grouped by identical layers.

    ``tokens`` holds each batch row's input tokens including padding ([batch][width]);
    ``padding`` marks pad positions [batch, width]; ``target_tokens`` are the decoder
    tokens of encoder-decoders (queries of the decoder and cross stacks).
    """

    tokens: tuple[tuple[str, ...], ...]
    padding: np.ndarray
    target_tokens: tuple[str, ...]
    groups: tuple[MaskGroup, ...]

    def axes(self, stack: Stack, row: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(query tokens, key tokens) of ``stack`` for batch row ``row``."""
        if stack == "decoder" and self.target_tokens:
            return self.target_tokens, self.target_tokens
        if stack == "cross":
            return self.target_tokens, self.tokens[row]
        return self.tokens[row], self.tokens[row]

    def pads(self, stack: Stack, row: int) -> tuple[np.ndarray, np.ndarray]:
        """(query, key) pad flags of ``stack`` for batch row ``row``; decoder tokens are never padded."""
        queries, keys = self.axes(stack, row)
        pad = self.padding[row]
        on_target = bool(self.target_tokens)
        query_pad = np.zeros(len(queries), dtype=bool) if on_target and stack != "encoder" else pad
        key_pad = np.zeros(len(keys), dtype=bool) if on_target and stack == "decoder" else pad
        return query_pad, key_pad


def read_masks(
    loaded: LoadedModel, prompts: Sequence[str | Messages], target: str | None = None
) -> ModelMasks:
    """Run the prompts as one padded batch and return the masks every attention call applied."""
    batch = batch_inputs(loaded, prompts, target=target)
    seen: dict[tuple[Stack, int], np.ndarray] = {}

    def keep(call: AttentionCall) -> None:
        rows, _, queries, keys = call.weights.shape
        if call.mask is None:
            seen[(call.site.stack, call.site.layer)] = np.ones((rows, queries, keys), dtype=bool)
        else:
            seen[(call.site.stack, call.site.layer)] = allowed_from_additive(call.mask.expand(rows, 1, queries, keys))

    forward(loaded, batch.inputs, Hooks(record=keep))
    groups: list[MaskGroup] = []
    for (stack, layer), allowed in sorted(seen.items(), key=lambda item: (item[0][0], item[0][1])):
        same = next((g for g in groups if g.stack == stack and np.array_equal(g.allowed, allowed)), None)
        if same is None:
            groups.append(MaskGroup(stack, (layer,), allowed))
        else:
            groups[groups.index(same)] = MaskGroup(stack, (*same.layers, layer), same.allowed)
    with loaded.lock:
        tokens = tuple(display_tokens(loaded.tokenizer, row.tolist())[0] for row in batch.inputs["input_ids"])
        target_tokens = display_tokens(loaded.tokenizer, batch.target_ids)[0] if batch.target_ids else ()
    return ModelMasks(
        tokens=tokens,
        padding=(batch.inputs["attention_mask"] == 0).numpy(),
        target_tokens=target_tokens,
        groups=tuple(groups),
    )


# --- applying a mask and comparing --------------------------------------------------------------


def prompt_tokens(
    loaded: LoadedModel, text: str, max_tokens: int = MAX_MASK_TOKENS
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Token ids and readable tokens of the prompt a mask is built over (two full runs stay small)."""
    ids = encode(loaded, text)
    if len(ids) > max_tokens:
        raise PromptError(f"The prompt has {len(ids)} tokens; masks can be applied to at most {max_tokens}.")
    with loaded.lock:
        tokens = display_tokens(loaded.tokenizer, ids)[0]
    return tuple(ids), tokens


@dataclass(frozen=True)
class MaskedRun:
    """One forward pass of a prompt under a mask.

    ``attention`` [layers, heads, n, n] of the main self-attention stack; ``prediction``
    and ``loss`` (mean next-token cross-entropy over the prompt) exist only for models
    with a language-model head.
    """

    attention: np.ndarray
    prediction: Prediction | None
    loss: float | None


@dataclass(frozen=True)
class MaskComparison:
    """The model's own run next to the run under ``allowed`` ([n, n]) for the prompt ``tokens``.

    ``output_change`` is the largest absolute change of the final output (logits of an
    LM head, else the last hidden states); the outputs themselves are not kept, since
    [n, vocab] logits would dominate the cache.
    """

    tokens: tuple[str, ...]
    allowed: np.ndarray
    original: MaskedRun
    masked: MaskedRun
    output_change: float

    @property
    def future_attention(self) -> float:
        """Share of the masked run's attention (mean over layers, heads, queries) on later tokens (k > q)."""
        later = np.triu(np.ones(self.allowed.shape, dtype=bool), 1)
        total = self.masked.attention[..., later].sum(axis=-1).mean()  # summed over queries
        return float(total / len(self.tokens))


def _run(
    loaded: LoadedModel, ids: torch.Tensor, allowed: np.ndarray | None, top_k: int
) -> tuple[MaskedRun, torch.Tensor]:
    """One recorded forward pass under ``allowed`` (None: the model's own mask), plus its final output [n, ...]."""
    mask = None if allowed is None else torch.from_numpy(np.ascontiguousarray(allowed))
    outputs, recording = record(loaded, {"input_ids": ids}, mask=mask)
    main = loaded.main_stack
    attention = recording.weights[main][0]
    logits = getattr(outputs, "logits", None)
    if logits is None:
        return MaskedRun(attention, None, None), outputs.last_hidden_state[0].float()
    logits = logits[0].float()
    targets = ids[0, 1:].to(logits.device)
    loss = torch.nn.functional.cross_entropy(logits[:-1], targets).item() if ids.shape[1] > 1 else None
    return MaskedRun(attention, top_next_tokens(loaded, logits[-1], top_k), loss), logits


def compare_mask(
    loaded: LoadedModel, input_ids: Sequence[int], allowed: np.ndarray, top_k: int = 5
) -> MaskComparison:
    """Run a prompt with the model's own mask and with ``allowed`` [n, n]; return both runs.

    Only self-attention of decoder-only and encoder-only models is masked; the
    replacement goes through our attention function for every layer and head.
    """
    if loaded.kind == "encoder-decoder":
        raise ValueError("Applying a mask is supported for decoder-only and encoder-only models.")
    n = len(input_ids)
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.shape != (n, n):
        raise ValueError(f"The mask is {allowed.shape}, but the prompt has {n} tokens.")
    if not allowed.any(axis=1).all():
        raise ValueError("Every query needs at least one allowed key (a row of the mask is empty).")
    ids = torch.tensor([list(input_ids)], dtype=torch.long)
    with loaded.lock:
        tokens = display_tokens(loaded.tokenizer, list(input_ids))[0]
    original, original_output = _run(loaded, ids, None, top_k)
    masked, masked_output = _run(loaded, ids, allowed, top_k)
    change = float((masked_output - original_output).abs().max())
    return MaskComparison(
        tokens=tokens, allowed=allowed, original=original, masked=masked, output_change=change
    )
