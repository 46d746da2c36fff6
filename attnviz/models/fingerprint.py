"""A model's fingerprint: a short hash of everything results computed with it depend on, for disk caches."""

from __future__ import annotations

import hashlib
import json
import threading

import torch
import transformers


def fingerprint(
    model: transformers.PreTrainedModel,
    tokenizer: transformers.PreTrainedTokenizerBase | None,
    lock: threading.RLock,
) -> str:
    """Hash of config, weights, tokenizer and chat template (16 hex digits); ``lock`` guards the shared tokenizer.

    Weights are sampled (the first and last values of every tensor), which tells apart
    different checkpoints under one name without reading hundreds of megabytes. Weights that
    accelerate offloaded (left on the ``meta`` device) have no values here: their shape and
    dtype count instead, and the weights kept on a device (embeddings first) still tell checkpoints apart.
    """
    digest = hashlib.sha256(model.config.to_json_string(use_diff=False).encode())
    for name, tensor in model.state_dict().items():
        if tensor.is_meta:
            digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            continue
        flat = tensor.detach().reshape(-1)
        sample = torch.cat([flat[:64], flat[-64:]]).float().cpu().numpy()
        digest.update(name.encode() + sample.tobytes())
    if tokenizer is not None:
        with lock:
            vocab = sorted(tokenizer.get_vocab().items())
            template = str(getattr(tokenizer, "chat_template", None))
        digest.update(json.dumps([vocab, template]).encode())
    return digest.hexdigest()[:16]
