"""This prompt against the corpus: where one prompt's head statistics fall in a head atlas's distributions.

Explore measures every head on the user's prompt (:class:`attnviz.heads.stats.HeadStats`); the
atlas holds each head's statistics over every corpus prompt. For each statistic both measure on
a prompt of text (not the generated sequences that induction and duplicate-token need), this gives
the prompt's value, the corpus mean with its 95% interval, and the prompt's percentile among the
corpus prompts. Cached atlases are found on disk by model fingerprint, whatever corpus they were built on.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from attnviz.heads.atlas import MEASURED_ON, Atlas, atlas_path, load_atlas
from attnviz.heads.corpus import Corpus
from attnviz.heads.stats import HeadStats
from attnviz.models.loading import LoadedModel


@dataclass(frozen=True)
class Comparison:
    """One statistic of one head: the prompt's ``value`` against ``corpus`` (its value on each corpus prompt
    that measures it), their ``mean`` with 95% interval ``low``–``high``, and the prompt's ``percentile``
    (0–100: the share of corpus prompts below it, ties counted half)."""

    statistic: str
    value: float
    corpus: np.ndarray
    mean: float
    low: float
    high: float
    percentile: float


def percentile_of(corpus: np.ndarray, value: float) -> float:
    """Percent of ``corpus`` values below ``value``, ties counted half (NaN values ignored; NaN if none left)."""
    measured = corpus[~np.isnan(corpus)]
    if measured.size == 0:
        return float("nan")
    return float(100.0 * ((measured < value).sum() + 0.5 * (measured == value).sum()) / measured.size)


def comparable(atlas: Atlas, stats: HeadStats) -> tuple[str, ...]:
    """Statistics both the atlas and ``stats`` hold that the atlas measures on natural text (the kind a prompt is)."""
    return tuple(
        name
        for name in atlas.statistics
        if MEASURED_ON.get(name) == "natural" and getattr(stats, name, None) is not None
    )


def compare_head(atlas: Atlas, stats: HeadStats, layer: int, head: int) -> tuple[Comparison, ...]:
    """The prompt's statistics of head (``layer``, ``head``) against the atlas's corpus, one per :func:`comparable`."""
    li, hi = atlas.layers.index(layer), atlas.heads.index(head)
    own_li, own_hi = stats.layers.index(layer), stats.heads.index(head)
    found = []
    for name in comparable(atlas, stats):
        si = atlas.statistics.index(name)
        values = atlas.values[:, li, hi, si]
        corpus = values[~np.isnan(values)]
        value = float(getattr(stats, name)[own_li, own_hi])
        mean, low, high = (float(array[li, hi, si]) for array in (atlas.mean, atlas.low, atlas.high))
        found.append(Comparison(name, value, corpus, mean, low, high, percentile_of(corpus, value)))
    return tuple(found)


def cached_atlas_paths(loaded: LoadedModel) -> tuple[Path, ...]:
    """Atlas files in the disk cache under this model's name (any corpus, prompt count or fingerprint), newest first."""
    example = atlas_path(loaded, Corpus("", ()), 0, None)
    digest = example.stem.rsplit("-", 1)[1]
    prefix = example.name[: -len(digest) - len(example.suffix)]
    found = example.parent.glob(glob.escape(prefix) + "?" * len(digest) + example.suffix)
    return tuple(sorted(found, key=lambda path: path.stat().st_mtime_ns, reverse=True))


def latest_atlas(loaded: LoadedModel, read: Callable[[Path], Atlas] = load_atlas) -> Atlas | None:
    """The newest cached atlas of exactly this model (same fingerprint), or None; ``read`` loads one file."""
    for path in cached_atlas_paths(loaded):
        try:
            found = read(path)
        except (OSError, ValueError, KeyError, TypeError):  # a file of an older atlas format, or half-removed
            continue
        if found.fingerprint == loaded.fingerprint:
            return found
    return None
