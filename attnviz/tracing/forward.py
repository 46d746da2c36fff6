"""The forward pass: one run of the model without KV cache, under its lock, with our hooks and thread budget."""

from __future__ import annotations

import inspect
from contextlib import AbstractContextManager

import torch
from transformers.utils import ModelOutput

from attnviz import hooks
from attnviz.hooks import Hooks
from attnviz.models import devices
from attnviz.models.loading import LoadedModel

# Float32 scores of one chunk of queries (see hooks.Hooks.chunk_bytes). On a CPU, cache-sized chunks keep
# every step of the softmax in cache and let causal chunks skip the keys they cannot see: a full trace of
# SmolLM2 at 1,024-2,048 tokens took 1.2-1.5x an SDPA forward with 8 MB chunks against 1.5-2.4x with
# 256 MB, a 2,048-token summary 13 s against 28 s (measured). 4 MB (about a chunk's scores and weights in
# the two cores' L2) beat 8 MB at 512-1,024 tokens: Explore's first view 1.06-1.10x an SDPA forward at 512
# against 1.14-1.25x, 1.01-1.14x at 1,024 against 1.10-1.20x (three runs in turns), a full trace at 512 1.10x
# against 1.18x. At least MIN_CHUNK_ROWS rows per chunk bound the per-chunk overhead of long prompts
# (8,192 tokens: 163 s with 64-row chunks, 194 s with 14).
# A GPU prefers few large chunks (each chunk is a few kernel launches and a sync).
CPU_CHUNK_BYTES = 4 * 2**20
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


def forward(
    loaded: LoadedModel,
    inputs: dict[str, object],
    active: Hooks | None = None,
    *,
    last_logits_only: bool = False,
    logits_to_keep: int | None = None,
) -> ModelOutput:
    """One forward pass without KV cache, under the model's lock, with ``active`` hooks applied.

    Inputs move to the device of the model's input embeddings (the first device when spread).
    ``last_logits_only`` skips the [n, vocab] logits (200 MB at 1,024 tokens for SmolLM2)
    when only attention or the next token is wanted; ``logits_to_keep`` keeps the last that many
    positions' logits (both where the model allows it; otherwise every position's come back).
    """
    extra: dict[str, object] = {"use_cache": False} if hasattr(loaded.model.config, "use_cache") else {}
    keep = 1 if last_logits_only else logits_to_keep
    if keep is not None and "logits_to_keep" in inspect.signature(loaded.model.forward).parameters:
        extra["logits_to_keep"] = keep
    inputs = {
        name: value.to(loaded.device) if torch.is_tensor(value) else value for name, value in inputs.items()
    }
    with loaded.lock, torch.inference_mode(), hooks.active(active), pass_threads(loaded, inputs):
        return loaded.model(**inputs, **extra)


def pass_threads(loaded: LoadedModel, inputs: dict[str, object]) -> AbstractContextManager[None]:
    """The CPU threads :func:`forward` runs ``inputs`` on (:func:`attnviz.models.devices.cpu_threads_for`).

    Token ids (encoder and decoder) size the pass; an image model's pixels are never a small pass.
    """
    ids = [value for name, value in inputs.items() if name.endswith("input_ids") and torch.is_tensor(value)]
    tokens = sum(value.numel() for value in ids) if ids else None
    return devices.cpu_threads_for(tokens, loaded.device)
