"""This prompt against the corpus: values, intervals and percentiles on planted atlases; cached atlases found."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from attnviz.heads.atlas import STATISTICS, Atlas, atlas_path, save_atlas
from attnviz.heads.compare import cached_atlas_paths, comparable, compare_head, latest_atlas, percentile_of
from attnviz.heads.corpus import CorpusPrompt, shipped_corpus
from attnviz.heads.stats import HeadStats

NAMES = tuple(STATISTICS)
KINDS = ("natural",) * 4 + ("repeated",) * 2  # four passages measure the text statistics


def planted_atlas(fingerprint: str = "planted", model_name: str = "planted-model") -> Atlas:
    """2 layers × 3 heads; natural statistic s of head (l, h) on passage p is 10·s + l + h/4 + p (p = 0..3), exact in binary."""
    values = np.full((len(KINDS), 2, 3, len(NAMES)), np.nan)
    base = 10.0 * np.arange(len(NAMES)) + np.arange(2)[:, None, None] + np.arange(3)[None, :, None] / 4
    for p, kind in enumerate(KINDS):
        generated = kind != "natural"
        measured = [si for si, name in enumerate(NAMES) if (name in ("induction", "duplicate")) == generated]
        values[p, ..., measured] = np.moveaxis(base[..., measured] + p, -1, 0)
    mean = np.nanmean(values, axis=0)
    prompts = tuple(CorpusPrompt(kind, (1, 2, 3), f"prompt {p}") for p, kind in enumerate(KINDS))
    return Atlas(
        model_name=model_name, fingerprint=fingerprint, corpus_name="planted", corpus_digest="0" * 16,
        prompts=prompts, layers=(0, 1), heads=(0, 1, 2), statistics=NAMES, values=values, mean=mean,
        low=mean - 0.5, high=mean + 0.5, roles={}, checks={},
    )  # fmt: skip


def prompt_stats(value: float) -> HeadStats:
    """Every head's prompt statistics equal to the atlas's base value of head (1, 2) plus ``value``."""
    grid = np.zeros((2, 3))
    grid[1, 2] = 1.5 + value
    return HeadStats(
        layers=(0, 1), heads=(0, 1, 2), entropy=grid.copy(), first_token=grid + 20, distance=grid + 10,
        previous_token=grid + 30, induction=np.full((2, 3), 99.0),
    )  # fmt: skip


def test_percentile_counts_values_below_and_half_the_ties() -> None:
    corpus = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    assert percentile_of(corpus, 2.5) == 50.0
    assert percentile_of(corpus, 2.0) == 37.5  # one below, one tie
    assert percentile_of(corpus, 0.0) == 0.0 and percentile_of(corpus, 9.0) == 100.0
    assert np.isnan(percentile_of(np.array([np.nan]), 1.0))


def test_comparison_reads_the_head_its_corpus_values_and_interval() -> None:
    atlas = planted_atlas()
    found = compare_head(atlas, prompt_stats(1.5), layer=1, head=2)
    # Only statistics measured on text and held by both sides: breadth is not in HeadStats, induction is on
    # generated sequences.
    assert [c.statistic for c in found] == ["entropy", "distance", "first_token", "previous_token"]
    assert comparable(atlas, prompt_stats(0.0)) == tuple(c.statistic for c in found)
    for c in found:
        si = NAMES.index(c.statistic)
        np.testing.assert_allclose(c.corpus, 10 * si + 1.5 + np.arange(4))  # passages 0..3 of head (1, 2)
        assert c.value == 10 * si + 3.0
        assert (c.mean, c.low, c.high) == pytest.approx((10 * si + 3.0, 10 * si + 2.5, 10 * si + 3.5))
        assert c.percentile == 50.0  # between passages 1 and 2
    assert [c.percentile for c in compare_head(atlas, prompt_stats(3.0), 1, 2)] == [87.5] * 4  # ties one
    assert [c.percentile for c in compare_head(atlas, prompt_stats(-1.0), 1, 2)] == [0.0] * 4


def test_latest_atlas_is_the_newest_of_this_model(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    loaded = tiny("gpt2")  # first: the tiny model borrows a built-in tokenizer from the real cache
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    assert cached_atlas_paths(loaded) == () and latest_atlas(loaded) is None
    corpus = shipped_corpus()
    ours = atlas_path(loaded, corpus, 4, None)
    save_atlas(planted_atlas(loaded.fingerprint, loaded.info.name), ours)
    stale = atlas_path(loaded, corpus, 8, None)  # same name, another fingerprint (weights changed), newer
    save_atlas(planted_atlas("another", loaded.info.name), stale)
    broken = atlas_path(loaded, corpus, 12, None)
    broken.write_bytes(b"not an npz")
    for age, path in enumerate((broken, stale, ours)):
        os.utime(path, ns=(10**18 - age, 10**18 - age))  # broken newest, ours oldest
    ours.with_suffix(".partial.npz").write_bytes(b"half written")
    (tmp_path / "atlas" / "other-model-0123456789abcdef.npz").write_bytes(b"")
    assert cached_atlas_paths(loaded) == (broken, stale, ours)
    found = latest_atlas(loaded)
    assert found is not None and found.fingerprint == loaded.fingerprint
    np.testing.assert_array_equal(found.values, planted_atlas().values)
