"""Thumbnails: each head's map block-averaged to a small square, from the full map or during the pass.

The browser gets one image of layers × heads thumbnails, never the full [layers, heads, n, n] tensor;
:class:`ThumbnailSums` builds them chunk by chunk inside the forward pass, so no full map is kept.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

THUMBNAIL = 24


def thumbnail(matrix: np.ndarray, size: int = THUMBNAIL) -> np.ndarray:
    """Block-average [..., q, k] to [..., size, size] (cells repeat when smaller), each map scaled to max 1.

    Rows are summed block by block straight from the stored dtype (float16 in the app) into
    float32, along the contiguous axis: no float32 copy of the map, ~3x faster than reduceat.
    """
    q, k = matrix.shape[-2:]
    rows = np.linspace(0, q, size + 1).astype(int)
    cols = np.linspace(0, k, size + 1).astype(int)
    starts, stops = rows[:-1], np.maximum(rows[1:], rows[:-1] + 1)  # an empty block repeats its first row
    row_sums = np.stack(
        [matrix[..., a:b, :].sum(axis=-2, dtype=np.float32) for a, b in zip(starts, stops, strict=True)],
        axis=-2,
    )
    # reduceat sums unequal blocks; a repeated start index yields that single column.
    totals = np.add.reduceat(row_sums, cols[:-1], axis=-1)
    counts = (stops - starts)[:, None] * np.maximum(np.diff(cols), 1)[None, :]
    means = totals / counts
    peak = means.max(axis=(-2, -1), keepdims=True)
    return np.divide(means, peak, out=np.zeros_like(means), where=peak > 0).astype(np.float32)


def blocks(n: int, size: int = THUMBNAIL) -> list[tuple[int, int]]:
    """Row (or column) ranges of a thumbnail's blocks over ``n`` tokens, as :func:`thumbnail` splits them."""
    starts = np.linspace(0, n, size + 1).astype(int)
    return [(int(lo), int(max(hi, lo + 1))) for lo, hi in itertools.pairwise(starts)]


class ThumbnailSums:
    """One layer's thumbnails built a chunk of queries at a time inside the forward pass.

    Summing each chunk while it is still in the cache costs almost nothing, where block-averaging
    the stored float16 maps afterwards took 0.7-1.8 s at 1,024 tokens (measured). ``finish``
    equals :func:`thumbnail` of the full maps up to float32 summation order.
    """

    def __init__(self, heads: int, n_queries: int, n_keys: int, size: int, device: torch.device) -> None:
        self.rows, self.cols = blocks(n_queries, size), blocks(n_keys, size)
        self.block_rows = torch.zeros((heads, size, n_keys), dtype=torch.float32, device=device)

    def add(self, weights: torch.Tensor, start: int) -> None:
        """Add float32 weights [heads, rows, width] of queries ``start..`` (every weight beyond ``width`` is 0)."""
        stop, width = start + weights.shape[1], weights.shape[2]
        for index, (lo, hi) in enumerate(self.rows):
            lo, hi = max(lo, start), min(hi, stop)
            if lo < hi:
                self.block_rows[:, index, :width] += weights[:, lo - start : hi - start].sum(1)

    def finish(self) -> np.ndarray:
        """Thumbnails [heads, size, size] float32 on the host, each scaled to its own maximum."""
        totals = torch.stack([self.block_rows[..., lo:hi].sum(-1) for lo, hi in self.cols], dim=-1)
        counts = torch.tensor([hi - lo for lo, hi in self.rows], dtype=torch.float32, device=totals.device)
        widths = torch.tensor([hi - lo for lo, hi in self.cols], dtype=torch.float32, device=totals.device)
        means = totals / (counts[:, None] * widths[None, :])
        peak = means.amax(dim=(-2, -1), keepdim=True)
        return torch.where(peak > 0, means / torch.where(peak > 0, peak, 1.0), 0.0).cpu().numpy()
