"""Download bounds for ``ATTNVIZ_ONLINE=1``: how many hub models, and how many bytes, the hub cache may hold.

``ATTNVIZ_MAX_MODEL_GB`` bounds one model; on a shared server students typing hub ids would
still fill the disk one model at a time. Both bounds are checked before weights are fetched:
the count before anything is downloaded, the bytes once the config (a few KB) gives the
parameter count. Offline nothing is downloaded, so nothing is checked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from huggingface_hub import constants

from attnviz.models import offline
from attnviz.models.errors import ModelLoadError

MAX_DOWNLOADS_VARIABLE = "ATTNVIZ_MAX_DOWNLOADS"
DOWNLOAD_MB_VARIABLE = "ATTNVIZ_DOWNLOAD_MB"


def max_downloads() -> int:
    """Most hub models the cache may hold (``ATTNVIZ_MAX_DOWNLOADS``, default 5)."""
    return int(os.environ.get(MAX_DOWNLOADS_VARIABLE, "5"))


def max_download_bytes() -> float:
    """Most bytes the hub cache may hold (``ATTNVIZ_DOWNLOAD_MB``, default 20,000 MB)."""
    return float(os.environ.get(DOWNLOAD_MB_VARIABLE, "20000")) * 1e6


def hub_cache() -> Path:
    """The Hugging Face hub cache attnviz downloads into (``HF_HUB_CACHE``, ``HF_HOME``)."""
    return Path(constants.HF_HUB_CACHE)


def _folder(repo_id: str) -> str:
    """The hub cache's folder name for a model repository (``models--owner--name``)."""
    return "models--" + repo_id.replace("/", "--")


def cached_models(cache: Path) -> set[str]:
    """Folder names of the model repositories in ``cache``."""
    try:
        return {
            entry.name for entry in os.scandir(cache) if entry.name.startswith("models--") and entry.is_dir()
        }
    except OSError:
        return set()


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (snapshot links to blobs are not counted twice)."""
    total = 0
    for parent, _, files in os.walk(folder):
        for file in files:
            try:
                status = os.lstat(os.path.join(parent, file))
            except OSError:  # removed meanwhile
                continue
            total += status.st_size if stat.S_ISREG(status.st_mode) else 0
    return total


def check_download_count(repo_id: str, cache: Path | None = None) -> None:
    """Refuse a hub id not in the cache yet when it already holds :func:`max_downloads` models (online only)."""
    if not offline.online_allowed():
        return
    held = cached_models(cache or hub_cache())
    if _folder(repo_id) not in held and len(held) >= max_downloads():
        raise ModelLoadError(
            f"'{repo_id}' would be downloaded, but this server keeps at most {max_downloads()} downloaded models "
            f"({MAX_DOWNLOADS_VARIABLE}) and has {len(held)}. Choose a built-in or an already downloaded model."
        )


def check_download_bytes(repo_id: str, needed: int, cache: Path | None = None) -> None:
    """Refuse a download of about ``needed`` bytes that would take the hub cache past :func:`max_download_bytes`.

    Bytes this repository already has in the cache count as downloaded (online only).
    """
    if not offline.online_allowed():
        return
    cache = cache or hub_cache()
    used = folder_bytes(cache)
    missing = max(0, needed - folder_bytes(cache / _folder(repo_id)))
    limit = max_download_bytes()
    if used + missing > limit:
        raise ModelLoadError(
            f"'{repo_id}' needs about {missing / 1e6:,.0f} MB more in the download cache, which holds "
            f"{used / 1e6:,.0f} MB of at most {limit / 1e6:,.0f} MB ({DOWNLOAD_MB_VARIABLE}). Choose a built-in "
            "or an already downloaded model."
        )
