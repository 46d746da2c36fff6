"""A head recomputed from its layer's kept input equals the same head of a full trace."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.heads.summary import summarise
from attnviz.tracing.layer_inputs import keep_inputs, trace_head
from attnviz.tracing.trace import trace
from ui import cache

TEXT = "one two three four five six seven eight nine ten, one two three"


def assert_heads_equal_full_trace(loaded, text: str, half: bool, atol: float, heads=None) -> None:
    summary, kept = keep_inputs(loaded, lambda: summarise(loaded, text), half=half)
    full = trace(loaded, text)
    assert kept is not None and kept.layers == full.layers == summary.layers
    np.testing.assert_array_equal(kept.input_ids, full.input_ids)
    for layer, head in heads or [(la, he) for la in full.layers for he in full.heads]:
        one = trace_head(loaded, kept, layer, head)
        assert one.tokens == full.tokens and one.layers == (layer,) and one.heads == (head,)
        expected = full.attention[full.layers.index(layer), full.heads.index(head)]
        if atol == 0:
            np.testing.assert_array_equal(one.attention[0, 0], expected)
        else:
            np.testing.assert_allclose(one.attention[0, 0], expected, atol=atol, rtol=0)


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2", "bert"])
def test_tiny_heads_from_kept_inputs_equal_the_full_trace_bit_for_bit(tiny, family: str) -> None:
    """In the model's dtype the layer reads the very same input, so every weight is identical."""
    assert_heads_equal_full_trace(tiny(family), TEXT, half=False, atol=0)


def test_tiny_heads_from_float16_inputs_stay_within_display_precision(tiny) -> None:
    assert_heads_equal_full_trace(tiny("llama"), TEXT, half=True, atol=1e-5)


def test_smollm2_heads_from_kept_inputs_equal_the_full_trace(smollm2) -> None:
    """270 tokens: float16 inputs move a weight by under 2e-3 (measured 1.0e-3 over 30 heads); the model's
    float32 gives the same bits."""
    text = " ".join(f"w{i % 41}" for i in range(100))
    assert_heads_equal_full_trace(smollm2, text, half=True, atol=2e-3, heads=[(0, 0), (15, 4), (29, 8)])
    assert_heads_equal_full_trace(smollm2, text, half=False, atol=0, heads=[(29, 8)])


def test_float16_keeps_half_the_bytes_of_the_model_dtype(tiny) -> None:
    loaded = tiny("llama")
    _, wide = keep_inputs(loaded, lambda: summarise(loaded, TEXT), half=False)
    _, narrow = keep_inputs(loaded, lambda: summarise(loaded, TEXT), half=True)
    n, d = len(wide.input_ids), loaded.info.d_model
    hidden = n * d * loaded.n_layers
    assert wide.nbytes - narrow.nbytes == hidden * 2  # float32 → float16 halves every layer's hidden states


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_encoder_decoders_keep_nothing_and_their_heads_take_the_full_pass(
    tiny, tiny_model_dir, family
) -> None:
    loaded = tiny(family)
    summary, kept = keep_inputs(loaded, lambda: summarise(loaded, TEXT, target="un deux"))
    assert kept is None and summary.n_tokens > 0
    prompt = cache.Prompt(str(tiny_model_dir(family)), TEXT, target="un deux")
    one = cache.head_trace(prompt, 1, 2)
    full = trace(cache.load(prompt.model), TEXT, target="un deux", layers=[1], heads=[2], max_tokens=None)
    np.testing.assert_array_equal(one.attention, full.attention)


def test_cache_opens_a_long_prompts_head_from_kept_inputs(tiny_model_dir) -> None:
    """ui.cache keeps the summary pass's inputs; the head it opens equals the same head of a full trace."""
    prompt = cache.Prompt(str(tiny_model_dir("llama")), TEXT)
    kept = cache.first_view(prompt).inputs
    assert kept is not None and cache.summary(prompt).layers == kept.layers
    one = cache.head_trace(prompt, 1, 3)
    full = trace(cache.load(prompt.model), TEXT)
    np.testing.assert_allclose(one.attention[0, 0], full.attention[1, 3], atol=1e-5, rtol=0)
    assert not one.attention.flags.writeable  # shared between sessions


def test_short_prompts_first_view_comes_from_reductions_and_equals_the_full_trace(tiny_model_dir) -> None:
    """Explore's first view of a short prompt: grid and statistics from one summary pass (no full map kept),
    each equal to those of the full trace; every head opened lazily equals the full trace's."""
    prompt = cache.Prompt(str(tiny_model_dir("gemma2")), TEXT + " (first view)")
    assert cache.summarised(prompt) and not cache.is_long(prompt)
    full = trace(cache.load(prompt.model), prompt.text)
    np.testing.assert_allclose(
        cache.summary_grid(prompt).mosaic, cache.grid(prompt, "decoder").mosaic, atol=2e-3, equal_nan=True
    )  # the full-trace grid reads Explore's float16 maps
    lazy, expected = cache.summary(prompt).stats(), cache.statistics(prompt, "decoder")
    for name in ("entropy", "distance", "first_token", "previous_token"):
        np.testing.assert_allclose(getattr(lazy, name), getattr(expected, name), atol=2e-3)
    for li, layer in enumerate(full.layers):
        for hi, head in enumerate(full.heads):
            one = cache.head_trace(prompt, layer, head)
            np.testing.assert_allclose(one.attention[0, 0], full.attention[li, hi], atol=1e-5, rtol=0)


def test_short_encoder_decoder_prompts_keep_the_full_trace(tiny_model_dir) -> None:
    """A summary covers the main stack only; an encoder-decoder's first view shows three stacks."""
    assert not cache.summarised(cache.Prompt(str(tiny_model_dir("t5")), TEXT, target="un deux"))
