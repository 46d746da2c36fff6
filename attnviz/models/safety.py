"""Safety rules for loading: what names, folders and sizes a model may have before any weight is read.

``trust_remote_code`` is never enabled (see :mod:`attnviz.models.loading`); only safetensors
weights are read, because pickle checkpoints can run arbitrary code when loaded. On a shared
server a student reaches only what the operator allows: local folders under the roots listed
in ``ATTNVIZ_MODEL_DIRS`` (none when unset: built-in models only), checked on the name's text
before the filesystem is asked anything, and every refusal of a name reads the same, so the
message never tells whether a path exists.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import transformers

from attnviz.models import offline
from attnviz.models.errors import ModelLoadError
from attnviz.models.registry import BUILTINS

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_NAME_CHARS = 300
MODEL_DIRS_VARIABLE = "ATTNVIZ_MODEL_DIRS"
# A hub id: "name" or "owner/name", letters, digits, '-', '_' and '.' (the hub's own rule).
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?", re.ASCII)


def unknown_model(name: str) -> ModelLoadError:
    """The one answer for a name that is not found, not allowed or not a model: it never says which."""
    hub = (
        "downloads are allowed (ATTNVIZ_ONLINE=1)"
        if offline.online_allowed()
        else "offline: only ids already in the local Hugging Face cache; ATTNVIZ_ONLINE=1 downloads"
    )
    return ModelLoadError(
        f"Unknown model '{name}': not a built-in name ({', '.join(BUILTINS)}), not a model folder this server "
        f"allows (the operator lists them in {MODEL_DIRS_VARIABLE}), and not a Hugging Face id it can load ({hub})."
    )


def canonical_name(name: str) -> str:
    """``name`` stripped and, if it is a path, normalised (``/x/``, ``/x/./`` → ``/x``): one folder, one name.

    Purely textual (the filesystem is never asked), so it is safe on any input; ``./x`` keeps its
    ``./`` so it still reads as a folder, not a hub id.
    """
    name = name.strip()
    if "/" not in name and not name.startswith((".", "~")):
        return name
    normal = os.path.normpath(name)
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return f"./{normal}" if name.startswith(".") and not normal.startswith(".") else normal


def check_name(name: str) -> None:
    """Refuse names that are too long or hold control characters, before they reach the filesystem or hub."""
    if len(name) > MAX_NAME_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ModelLoadError(
            f"Unknown model: a model name is a built-in name ({', '.join(BUILTINS)}), a folder or a hub id, "
            f"at most {MAX_NAME_CHARS} characters without control characters."
        )


def model_roots() -> tuple[tuple[str, str], ...]:
    """The operator's roots for local folders (``ATTNVIZ_MODEL_DIRS``, ``os.pathsep``-separated), each as
    (absolute path as written, path with symlinks resolved); none when unset."""
    listed = os.environ.get(MODEL_DIRS_VARIABLE, "").split(os.pathsep)
    return tuple(
        (os.path.abspath(os.path.expanduser(root)), os.path.realpath(os.path.expanduser(root)))
        for root in (entry.strip() for entry in listed)
        if root
    )


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def allowed_folder(name: str) -> Path | None:
    """Where ``name`` points if that lies inside an allowed root, else None.

    First on the text alone (``..`` collapsed), so a name outside every root never reaches the
    filesystem; then with symlinks resolved, so no link inside a root leads out of it.
    """
    roots = model_roots()
    if not roots or (name.startswith("~") and not name.startswith("~/") and name != "~"):
        return None  # no roots, or "~user" (whose lookup would ask the system's user database)
    written = os.path.abspath(os.path.expanduser(name))
    if not any(_inside(written, root) for pair in roots for root in pair):
        return None
    resolved = os.path.realpath(written)
    if not any(_inside(resolved, real) for _, real in roots):
        return None
    return Path(resolved)


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the form of a hub id and names nothing here (transformers would read a local folder
    of that name first, whichever roots are allowed). Ask only after :func:`allowed_folder` said no."""
    return _HUB_ID.fullmatch(name) is not None and not os.path.lexists(name)


def check_local_folder(folder: Path, name: str) -> None:
    """Refuse a folder that is not a Hugging Face model folder with safetensors weights.

    Messages name the model as the user wrote it, never the resolved path, and list no files.
    """
    try:
        files = [p.name for p in folder.iterdir()]
    except OSError:  # not a folder, unreadable, gone
        raise unknown_model(name) from None
    if "config.json" not in files:
        raise unknown_model(name)
    if not any(file.endswith(".safetensors") for file in files):
        raise ModelLoadError(
            f"'{name}' has no .safetensors weights. attnviz only loads safetensors, because pickle "
            f"checkpoints ({', '.join(PICKLE_SUFFIXES)}) can run arbitrary code when loaded."
        )


def max_model_bytes() -> float:
    """Largest float32 model this process loads (``ATTNVIZ_MAX_MODEL_GB``, default 8 GB; 0 = no limit)."""
    return float(os.environ.get("ATTNVIZ_MAX_MODEL_GB", "8")) * 1e9


def parameter_bytes(config: transformers.PretrainedConfig, model_class: type) -> int:
    """Bytes the model's parameters take in float32, counted on the meta device (no memory, no weights read)."""
    with torch.device("meta"):
        skeleton = model_class.from_config(config)
    return 4 * sum(p.numel() for p in skeleton.parameters())


def check_size(size: int, name: str) -> None:
    """Refuse a model whose float32 parameters (``size`` bytes, see :func:`parameter_bytes`) exceed
    :func:`max_model_bytes`, before loading any weight."""
    limit = max_model_bytes()
    if 0 < limit < size:
        raise ModelLoadError(
            f"'{name}' needs about {size / 1e9:.1f} GB for its parameters in float32; this server loads models "
            f"up to {limit / 1e9:.1f} GB (ATTNVIZ_MAX_MODEL_GB). Choose a smaller model."
        )
