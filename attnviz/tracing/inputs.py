"""Inputs: prompts (text or chat messages) tokenised, checked against the limits, and padded for the model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from attnviz.models.loading import LoadedModel

if TYPE_CHECKING:
    from attnviz.tracing.trace import Trace

Messages = Sequence[dict[str, str]]
DEFAULT_MAX_TOKENS = 4096


class PromptError(ValueError):
    """The prompt cannot be traced (empty, too long, or the model has no tokenizer)."""


def prompt_inputs(ids: Sequence[int], device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """Model inputs of one unpadded prompt: ``input_ids`` [1, n] and an all-ones ``attention_mask``."""
    input_ids = torch.tensor([list(ids)], dtype=torch.long, device=device)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}


def require_tokenizer(loaded: LoadedModel):  # noqa: ANN202 - returns the model's tokenizer type
    if loaded.tokenizer is None:
        raise PromptError(f"'{loaded.info.name}' has no tokenizer, so it cannot trace text.")
    return loaded.tokenizer


def encode(loaded: LoadedModel, text: str | None = None, messages: Messages | None = None) -> list[int]:
    """Token ids of a prompt: plain text, or chat messages through the chat template."""
    tokenizer = require_tokenizer(loaded)
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


def check_length(loaded: LoadedModel, n: int, max_tokens: int | None) -> None:
    """``max_tokens`` None: up to the model's context length."""
    limits = [m for m in (max_tokens, context_length(loaded)) if m is not None]
    limit = min(limits) if limits else n
    if n > limit:
        raise PromptError(
            f"The prompt has {n} tokens; at most {limit} can be traced with '{loaded.info.name}'."
        )


def pad(sequences: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids, mask


def target_ids_of(loaded: LoadedModel, target: str | None) -> list[int]:
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
    tokenizer = require_tokenizer(loaded)
    encoded = [encode(loaded, messages=p) if not isinstance(p, str) else encode(loaded, p) for p in prompts]
    for ids in encoded:
        check_length(loaded, len(ids), max_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids, attention_mask = pad(encoded, pad_id, left=tokenizer.padding_side == "left")
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    target_ids: list[int] = []
    if loaded.kind == "encoder-decoder":
        target_ids = target_ids_of(loaded, target)
        inputs["decoder_input_ids"] = torch.tensor([target_ids] * len(prompts), dtype=torch.long)
    return Batch(inputs, encoded, target_ids)


def trace_inputs(loaded: LoadedModel, trace: Trace) -> dict[str, torch.Tensor]:
    """Model inputs that reproduce the traced forward pass."""
    inputs = prompt_inputs(trace.input_ids.tolist())
    if loaded.kind == "encoder-decoder" and trace.target_ids is not None:
        inputs["decoder_input_ids"] = torch.tensor([trace.target_ids.tolist()], dtype=torch.long)
    return inputs
