"""Summaries reduced during the forward pass equal the thumbnails and statistics of full traces."""

from __future__ import annotations

import numpy as np
import pytest

import attnviz
from attnviz import hooks
from attnviz.heads import stats
from attnviz.heads.summary import STAT_NAMES, summarise
from attnviz.tracing.inputs import PromptError
from attnviz.tracing.thumbnails import thumbnail

# Small chunks force many chunks of queries (and key trimming) even on short prompts.
SMALL_CHUNKS = 20_000


def assert_summary_matches_trace(loaded, text: str, chunk_bytes: int) -> None:  # noqa: ANN001 - LoadedModel
    summary = summarise(loaded, text, chunk_bytes=chunk_bytes)
    full = attnviz.trace(loaded, text)
    assert summary.tokens == full.tokens and summary.layers == full.layers and summary.heads == full.heads
    assert summary.thumbnails.shape == (len(full.layers), len(full.heads), 24, 24)
    np.testing.assert_allclose(summary.thumbnails, thumbnail(full.attention), atol=1e-5, rtol=0)
    expected = stats.head_stats(full.attention, full.layers, full.heads)
    assert summary.head_stat_names == STAT_NAMES
    for index, name in enumerate(STAT_NAMES):
        np.testing.assert_allclose(summary.head_stats[..., index], getattr(expected, name), rtol=1e-4, atol=1e-5)
    assert summary.stats().rows() and summary.device == "cpu · float32"


@pytest.mark.parametrize("family", ["llama", "gemma2", "bert"])
def test_tiny_summary_equals_full_trace(tiny, family: str) -> None:
    """Causal with GQA, sliding window with softcap, bidirectional encoder; fewer than 24 tokens repeat cells."""
    assert_summary_matches_trace(tiny(family), "one two three four five six seven eight nine ten", SMALL_CHUNKS)


def test_summary_tells_each_layer_done_once_its_last_chunk_is_reduced(tiny) -> None:
    loaded, told = tiny("llama"), []
    summary = summarise(
        loaded, "one two three four five six", chunk_bytes=SMALL_CHUNKS, progress=lambda *t: told.append(t)
    )
    n = len(summary.layers)
    assert n > 1 and told == [(k, n) for k in range(1, n + 1)]


def test_smollm2_summary_equals_full_trace_at_300_tokens(smollm2) -> None:
    text = " ".join(f"w{i % 41}" for i in range(100))
    assert_summary_matches_trace(smollm2, text, 2_000_000)


def test_summary_allows_the_model_context_length_and_no_more(tiny) -> None:
    loaded = tiny("llama")  # max_position_embeddings 256
    summary = summarise(loaded, " ".join(["word"] * 200))
    assert 200 <= summary.n_tokens <= 256
    with pytest.raises(PromptError, match="at most 256"):
        summarise(loaded, " ".join(["word"] * 300))


@pytest.mark.parametrize(
    ("family", "after_last_attention"),
    [
        ("llama", lambda model: model.model.layers[-1].mlp),
        ("bert", lambda model: model.encoder.layer[-1].output),
        ("t5", lambda model: model.get_decoder()),  # the main stack is the encoder: the decoder never runs
    ],
)
def test_summary_pass_stops_after_the_last_layers_attention(tiny, family: str, after_last_attention) -> None:  # noqa: ANN001
    """Nothing after the last attention weights is computed (a trace computes it), and the stop leaves no hooks."""
    loaded, text = tiny(family), "one two three four five six"
    target = "un deux" if family == "t5" else None
    calls: list[str] = []
    handle = after_last_attention(loaded.model).register_forward_hook(lambda *_: calls.append("ran"))
    try:
        summary = summarise(loaded, text, target=target)
        assert summary.layers == loaded.main_layers and calls == []
        assert hooks._ACTIVE.get() is None
        attnviz.trace(loaded, text, target=target)
        assert calls
    finally:
        handle.remove()
