"""Figures: token labels are escaped, repeated tokens stay apart, long matrices stay small, the head grid
is a picture of its mosaic."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
from PIL import Image
from plotly.colors import sample_colorscale, unlabel_rgb

from attnviz.heads.grid import head_grid
from attnviz.views.figures import attention_heatmap, downsample, head_grid_figure


def test_repeated_tokens_keep_their_own_columns_and_labels_are_escaped() -> None:
    tokens = ["the", "<img src=x onerror=alert(1)>", "the"]
    spec = json.loads(attention_heatmap(np.eye(3), tokens, tokens).to_json())
    heatmap = spec["data"][0]
    assert heatmap["x"] == ["0: the", "1: &lt;img src=x onerror=alert(1)&gt;", "2: the"]
    assert spec["layout"]["xaxis"]["ticktext"] == ["the", "&lt;img src=x onerror=alert(1)&gt;", "the"]
    assert "<img" not in json.dumps(spec)


def test_long_matrices_are_block_averaged_and_sent_as_numbers() -> None:
    weights = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    reduced, block = downsample(weights, 256)
    assert block == 4 and reduced.shape == (256, 256)
    np.testing.assert_allclose(reduced[0, 0], weights[:4, :4].mean(), rtol=1e-6)
    payload = attention_heatmap(weights, ["a"] * 1024, ["b"] * 1024).to_json()
    assert len(payload) < 500_000  # 65,536 float32 cells in base64; per-cell hover strings made it 1.5 MB
    assert json.loads(payload)["data"][0]["x"][0] == "tokens 0–3"


def test_head_grid_is_a_png_of_the_mosaic_in_the_colour_scale_with_clear_gaps() -> None:
    attention = np.random.default_rng(1).random((3, 2, 40, 40)).astype(np.float16)
    grid = head_grid(attention, (0, 1, 2), (0, 1), size=8, gap=2)
    spec = json.loads(head_grid_figure(grid, selected=(2, 1), colorscale="Magma").to_json())
    image, points = spec["data"]
    assert image["type"] == "image" and len(points["customdata"]) == 6
    assert points["customdata"][5] == [2, 1] and (points["x"][5], points["y"][5]) == grid.cell(2, 1)
    png = Image.open(io.BytesIO(base64.b64decode(image["source"].split(",", 1)[1]))).convert("RGBA")
    pixels = np.asarray(png)
    assert pixels.shape[:2] == grid.mosaic.shape
    gaps = np.isnan(grid.mosaic)
    assert (pixels[gaps, 3] == 0).all() and (pixels[~gaps, 3] == 255).all()
    # Each cell is plotly's own colour for its value, to one of 255 levels.
    values = grid.mosaic[~gaps]
    expected = np.array([unlabel_rgb(c) for c in sample_colorscale("Magma", list(values.astype(float)))])
    assert np.abs(pixels[~gaps, :3] - expected).max() <= 3
    assert len(image["source"]) < len(json.dumps(grid.mosaic[~gaps].tolist())) / 2


def test_signed_values_get_a_scale_centred_on_zero_and_a_title_that_fits() -> None:
    """Mostly positive drops with one small negative: zero must stay the white middle, not pale red."""
    drops = np.array([[0.9, 0.01, -0.05], [0.4, 0.0, 0.2]], dtype=np.float32)
    figure = attention_heatmap(drops, ["a", "b"], ["[1]", "[2]", "[3]"], value_name="log-prob lost without it",
                               diverging=True)  # fmt: skip
    heatmap = figure.data[0]
    assert heatmap.zmid == 0.0
    scale = [list(stop) for stop in heatmap.colorscale]
    assert min(unlabel_rgb(sample_colorscale(scale, [0.5])[0])) > 240  # white at 0
    top = unlabel_rgb(sample_colorscale(scale, [1.0])[0])
    assert top[0] > top[2]  # positive (the answer needs the source) is red
    lines = heatmap.colorbar.title.text.split("<br>")
    assert " ".join(lines) == "log-prob lost without it" and max(map(len, lines)) <= 12
    plain = attention_heatmap(drops.clip(0), ["a", "b"], ["[1]", "[2]", "[3]"])
    assert plain.data[0].zmid is None  # attention weights keep their sequential scale


def test_a_64_token_window_labels_every_query_and_key() -> None:
    tokens = [f"t{i}" for i in range(64)]
    figure = attention_heatmap(np.full((64, 64), 1 / 64, dtype=np.float32), tokens, tokens, first_query=100)
    assert figure.layout.yaxis.ticktext == tuple(tokens) and figure.layout.xaxis.ticktext == tuple(tokens)
    assert figure.layout.height >= 64 * 17  # a row per label: they cannot overlap
    assert figure.layout.xaxis.tickangle == -90  # upright key labels, one per column, do not overlap
