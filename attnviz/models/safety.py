"""Safety rules for loading: what names, folders and sizes a model may have before any weight is read.

``trust_remote_code`` is never enabled (see :mod:`attnviz.models.loading`); only safetensors
weights are read, because pickle checkpoints can run arbitrary code when loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import transformers

from attnviz.models.errors import ModelLoadError
from attnviz.models.registry import BUILTINS

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_NAME_CHARS = 300


def check_name(name: str) -> None:
    """Refuse names that are too long or hold control characters, before they reach the filesystem or hub."""
    if len(name) > MAX_NAME_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ModelLoadError(
            f"Unknown model: a model name is a built-in name ({', '.join(BUILTINS)}), a folder or a hub id, "
            f"at most {MAX_NAME_CHARS} characters without control characters."
        )


def check_local_folder(folder: Path) -> None:
    """Refuse a folder that is not a Hugging Face model folder with safetensors weights."""
    files = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    if "config.json" not in files:
        raise ModelLoadError(f"Folder '{folder}' has no config.json, so it is not a Hugging Face model folder.")
    if not any(name.endswith(".safetensors") for name in files):
        pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
        detail = f" It has pickle checkpoints ({', '.join(sorted(pickles))})," if pickles else ""
        raise ModelLoadError(
            f"Folder '{folder}' has no .safetensors weights.{detail} attnviz only loads safetensors, "
            "because pickle checkpoints can run arbitrary code when loaded."
        )


def max_model_bytes() -> float:
    """Largest float32 model this process loads (``ATTNVIZ_MAX_MODEL_GB``, default 8 GB; 0 = no limit)."""
    return float(os.environ.get("ATTNVIZ_MAX_MODEL_GB", "8")) * 1e9


def parameter_bytes(config: transformers.PretrainedConfig, model_class: type) -> int:
    """Bytes the model's parameters take in float32, counted on the meta device (no memory, no weights read)."""
    with torch.device("meta"):
        skeleton = model_class.from_config(config)
    return 4 * sum(p.numel() for p in skeleton.parameters())


def check_size(config: transformers.PretrainedConfig, model_class: type, name: str) -> None:
    """Refuse a model whose float32 parameters exceed :func:`max_model_bytes`, before loading any weight."""
    limit = max_model_bytes()
    if limit <= 0:
        return
    size = parameter_bytes(config, model_class)
    if size > limit:
        raise ModelLoadError(
            f"'{name}' needs about {size / 1e9:.1f} GB for its parameters in float32; this server loads models "
            f"up to {limit / 1e9:.1f} GB (ATTNVIZ_MAX_MODEL_GB). Choose a smaller model."
        )
