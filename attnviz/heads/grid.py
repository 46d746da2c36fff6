"""Head grid: every head as a small block-averaged thumbnail, tiled into one mosaic.

The browser gets one image of layers × heads thumbnails (e.g. 30 × 9 × 24² cells),
never the full [layers, heads, n, n] tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnviz.tracing.thumbnails import THUMBNAIL, thumbnail


@dataclass(frozen=True)
class HeadGrid:
    """A mosaic [heads·(size+gap), layers·(size+gap)]: layer ``i`` is column block i, head ``j`` row block j.

    Each thumbnail is scaled to its own maximum and square-rooted, so faint structure next to
    a dominant first-token column stays visible; gaps are NaN.
    """

    mosaic: np.ndarray
    size: int
    gap: int
    layers: tuple[int, ...]
    heads: tuple[int, ...]

    def cell(self, layer_index: int, head_index: int) -> tuple[float, float]:
        """Centre (x, y) of a thumbnail in mosaic coordinates."""
        step = self.size + self.gap
        return layer_index * step + (self.size - 1) / 2, head_index * step + (self.size - 1) / 2


def head_grid(
    attention: np.ndarray,
    layers: tuple[int, ...],
    heads: tuple[int, ...],
    size: int = THUMBNAIL,
    gap: int = 2,
) -> HeadGrid:
    """Thumbnails of every head of [layers, heads, q, k] tiled into one mosaic."""
    return grid_of_thumbnails(thumbnail(attention, size), layers, heads, gap)


def grid_of_thumbnails(
    thumbs: np.ndarray, layers: tuple[int, ...], heads: tuple[int, ...], gap: int = 2
) -> HeadGrid:
    """Tile thumbnails [layers, heads, size, size] (e.g. a long prompt's summary) into one mosaic."""
    n_layers, n_heads, size = thumbs.shape[:3]
    step = size + gap
    mosaic = np.full((n_heads * step - gap, n_layers * step - gap), np.nan, dtype=np.float32)
    for li in range(n_layers):
        for hi in range(n_heads):
            mosaic[hi * step : hi * step + size, li * step : li * step + size] = np.sqrt(thumbs[li, hi])
    return HeadGrid(mosaic=mosaic, size=size, gap=gap, layers=tuple(layers), heads=tuple(heads))
