"""Download bounds (ATTNVIZ_ONLINE=1): count and bytes of the hub cache, checked before anything is fetched.

No network here: the checks run on a hub cache laid out as huggingface_hub lays it out
(``models--owner--name/blobs`` with ``snapshots`` linking to the blobs).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import constants

import attnviz
from attnviz.models.downloads import check_download_bytes, check_download_count, folder_bytes
from attnviz.models.loading import ModelLoadError


def cached(cache: Path, repo_id: str, size: int) -> None:
    """One model repository in ``cache`` with a ``size``-byte blob and a snapshot link to it."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    (repo / "blobs" / "abc123").write_bytes(b"\0" * size)
    (repo / "snapshots" / "main").mkdir(parents=True)
    (repo / "snapshots" / "main" / "model.safetensors").symlink_to(repo / "blobs" / "abc123")


@pytest.fixture()
def online(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Downloads allowed, into an empty hub cache of this test's own."""
    monkeypatch.setenv("ATTNVIZ_ONLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    return tmp_path


def test_linked_snapshots_are_counted_once(tmp_path: Path) -> None:
    cached(tmp_path, "a/one", 1_000)
    cached(tmp_path, "b/two", 2_500)
    assert folder_bytes(tmp_path) == 3_500


def test_count_bound_refuses_only_new_models(online: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNVIZ_MAX_DOWNLOADS", "2")
    cached(online, "a/one", 10)
    check_download_count("c/three")  # one held, room for another
    cached(online, "b/two", 10)
    check_download_count("a/one")  # already downloaded: no new download
    with pytest.raises(
        ModelLoadError, match=r"at most 2 downloaded models \(ATTNVIZ_MAX_DOWNLOADS\) and has 2"
    ):
        check_download_count("c/three")


def test_byte_bound_counts_what_the_cache_holds(online: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNVIZ_DOWNLOAD_MB", "1")  # 1,000,000 bytes
    cached(online, "a/one", 600_000)
    check_download_bytes("b/two", 400_000)
    with pytest.raises(ModelLoadError, match=r"about 0 MB more.*holds 1 MB of at most 1 MB"):
        check_download_bytes("b/two", 400_001)
    check_download_bytes("a/one", 1_000_000)  # 600 kB of it are already here


def test_offline_nothing_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTNVIZ_ONLINE", raising=False)
    monkeypatch.setenv("ATTNVIZ_MAX_DOWNLOADS", "0")
    monkeypatch.setenv("ATTNVIZ_DOWNLOAD_MB", "0")
    check_download_count("a/one", tmp_path)
    check_download_bytes("a/one", 10**12, tmp_path)


def test_load_model_checks_the_count_before_asking_the_hub(
    online: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Online, a new hub id past the bound is refused with its own message before any request is made."""
    monkeypatch.setenv("ATTNVIZ_MAX_DOWNLOADS", "0")
    with pytest.raises(ModelLoadError, match="ATTNVIZ_MAX_DOWNLOADS"):
        attnviz.load_model("someone/some-model")
    assert not list(online.iterdir())  # nothing was fetched, not even a config
