"""Figures: token labels are escaped, repeated tokens stay apart, long matrices stay small."""

from __future__ import annotations

import json

import numpy as np

from attnviz.figures import attention_heatmap, downsample


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
