"""Head-grid thumbnails: block means of the real map, scaled per head."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.heads.grid import head_grid
from attnviz.tracing.inputs import batch_inputs
from attnviz.tracing.thumbnails import thumbnail
from attnviz.tracing.trace import record, trace, trace_batch


def block_means(matrix: np.ndarray, size: int) -> np.ndarray:
    """Reference: the mean of each linspace block, one cell at a time (a too-small side repeats cells)."""
    q, k = matrix.shape
    rows, cols = np.linspace(0, q, size + 1).astype(int), np.linspace(0, k, size + 1).astype(int)
    out = np.empty((size, size))
    for i in range(size):
        for j in range(size):
            out[i, j] = matrix[
                rows[i] : max(rows[i + 1], rows[i] + 1), cols[j] : max(cols[j + 1], cols[j] + 1)
            ].mean()
    return out / out.max()


@pytest.mark.parametrize(("n", "dtype"), [(50, np.float32), (77, np.float16), (7, np.float16)])
def test_thumbnail_is_the_scaled_block_mean(n: int, dtype: type) -> None:
    maps = np.random.default_rng(n).random((3, n, n)).astype(dtype)
    thumbs = thumbnail(maps, size=8)
    assert thumbs.shape == (3, 8, 8) and thumbs.dtype == np.float32
    for head in range(3):
        np.testing.assert_allclose(thumbs[head], block_means(maps[head].astype(np.float64), 8), rtol=1e-5)


def test_grid_tiles_square_rooted_thumbnails_with_nan_gaps() -> None:
    attention = np.random.default_rng(0).random((2, 3, 30, 30)).astype(np.float16)
    grid = head_grid(attention, (0, 1), (0, 1, 2), size=6, gap=2)
    assert grid.mosaic.shape == (3 * 8 - 2, 2 * 8 - 2)
    np.testing.assert_allclose(grid.mosaic[8:14, 8:14], np.sqrt(thumbnail(attention[1, 1], 6)), rtol=1e-6)
    assert np.isnan(grid.mosaic[6:8]).all() and np.isnan(grid.mosaic[:, 6:8]).all()


@pytest.mark.parametrize("family", ["llama", "bert", "t5"])
def test_thumbnails_reduced_in_the_forward_pass_equal_the_stored_maps_thumbnails(tiny, family: str) -> None:
    """A prompt traced alone gets its thumbnails during the forward pass; they equal thumbnail() of its maps."""
    loaded = tiny(family)
    text = "The quick brown fox jumps over the lazy dog, and the dog sleeps on. " * 3
    traced = trace(loaded, text, target="Der Hund" if loaded.kind == "encoder-decoder" else None)
    assert traced.thumbnails is not None and traced.thumbnails.shape[:2] == traced.attention.shape[:2]
    np.testing.assert_allclose(traced.thumbnails, thumbnail(traced.attention), atol=1e-5)
    with_chunks = record_thumbnails(loaded, text, chunk_bytes=1)  # one query row per chunk
    np.testing.assert_allclose(with_chunks, traced.thumbnails, atol=1e-5)
    batched = trace_batch(
        loaded, [text, "Short."], target="Der Hund" if loaded.kind == "encoder-decoder" else None
    )
    assert batched[0].thumbnails is None  # rows of a batch are cropped afterwards: the grid computes them


def record_thumbnails(loaded, text: str, chunk_bytes: int) -> np.ndarray:  # noqa: ANN001 - LoadedModel
    inputs = batch_inputs(
        loaded, [text], target="Der Hund" if loaded.kind == "encoder-decoder" else None
    ).inputs
    _, recording = record(loaded, inputs, chunk_bytes=chunk_bytes, thumbnails=True)
    return recording.thumbnails[loaded.main_stack]
