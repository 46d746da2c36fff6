"""The first view's one pass: the detail head recorded alongside the summary equals the same head opened
from the kept inputs and the full trace, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.heads.first_view import first_view
from attnviz.tracing.layer_inputs import trace_head
from attnviz.tracing.trace import trace
from ui import cache

TEXT = "one two three four five six seven eight nine ten, one two three"


@pytest.mark.parametrize("family", ["llama", "gemma2", "bert"])
def test_detail_head_from_the_pass_equals_the_kept_input_head_and_the_full_trace(tiny, family: str) -> None:
    loaded = tiny(family)
    layer, head = loaded.main_layers[-1], loaded.n_heads - 1
    view = first_view(loaded, TEXT, detail=(layer, head))
    full = trace(loaded, TEXT)
    assert view.inputs is not None and view.summary.layers == full.layers
    recorded = view.head(layer, head)
    assert recorded is not None and recorded.layers == (layer,) and recorded.heads == (head,)
    assert recorded.tokens == full.tokens and recorded.attention.dtype == np.float32
    np.testing.assert_array_equal(recorded.attention, trace_head(loaded, view.inputs, layer, head).attention)
    np.testing.assert_array_equal(recorded.attention[0, 0], full.attention[full.layers.index(layer), head])
    assert view.head(layer, head - 1) is None and view.head(loaded.main_layers[0], head) is None
    assert view.nbytes == first_view(loaded, TEXT).nbytes + recorded.attention.nbytes


def test_smollm2_detail_head_equals_the_full_trace(smollm2) -> None:
    """270 tokens; a full trace computes every layer the eager way, as the summary pass does."""
    text = " ".join(f"w{i % 41}" for i in range(100))
    view = first_view(smollm2, text, detail=(12, 5))
    full = trace(smollm2, text)
    np.testing.assert_array_equal(view.head(12, 5).attention[0, 0], full.attention[12, 5])


def test_explore_opens_the_head_its_first_view_recorded_without_another_pass(tiny_model_dir, replayed_heads) -> None:
    """ui.cache serves the head the pass recorded; any other head still comes from its layer's kept input."""
    prompt = cache.Prompt(str(tiny_model_dir("llama")), TEXT + " (detail)")
    view = cache.first_view(prompt, detail=(1, 2))
    assert cache.head_trace(prompt, 1, 2) is view.detail and not view.detail.attention.flags.writeable
    cache.head_trace(prompt, 0, 2)
    assert replayed_heads == [(0, 2)]
