"""attnviz.learn walkthrough (toy, recompute, verify, steps): the toy against attnviz.learn.variants, real first layers against the model's own weights."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch

from attnviz.learn import variants
from attnviz.learn.recompute import first_layer
from attnviz.learn.steps import steps
from attnviz.learn.toy import TOY_D_MODEL, toy
from attnviz.learn.verify import verify
from attnviz.learn.walkthrough import MASK_CHOICES, WalkthroughError
from attnviz.models.loading import LoadedModel
from attnviz.tracing.trace import trace

SENTENCE = "The cat sat on the mat because it was tired"


@pytest.mark.parametrize("mask_choice", MASK_CHOICES)
def test_toy_equals_multi_head(mask_choice: str) -> None:
    walk = toy("the cat sat on the mat", mask_choice)
    x = torch.tensor(walk.x)
    output, weights = variants.multi_head(
        x, x, *(torch.tensor(m) for m in (walk.w_q, walk.w_k, walk.w_v, walk.w_o)), 2, mask=walk.mask
    )
    np.testing.assert_allclose(walk.weights, weights.numpy(), atol=1e-12)
    np.testing.assert_allclose(walk.output, output.numpy(), atol=1e-12)
    assert np.array_equal(walk.x, np.round(walk.x, 1))  # readable inputs: one decimal
    assert walk.x.shape == (6 + walk.padding, TOY_D_MODEL)


def test_toy_padding_appends_unread_tokens_and_same_word_same_vector() -> None:
    walk = toy("the cat saw the dog", "padding")
    assert walk.tokens[-2:] == ("[pad]", "[pad]") and walk.padding == 2
    assert (walk.weights[:, :, -2:] == 0).all()
    assert np.array_equal(walk.embeddings[0], walk.embeddings[3])  # "the" twice


def test_toy_scale_and_temperature() -> None:
    plain = toy("a b c d", "none", scaled=False)
    scaled = toy("a b c d", "none")
    hot = toy("a b c d", "none", temperature=4.0)
    assert plain.scale == 1.0 and scaled.scale == pytest.approx(3**-0.5)
    np.testing.assert_allclose(hot.scaled, scaled.scaled / 4)
    # Higher temperature flattens every row: the largest weight can only shrink.
    assert (hot.weights.max(-1) <= scaled.weights.max(-1) + 1e-12).all()
    with pytest.raises(WalkthroughError, match="temperature"):
        toy("a b", temperature=0)


def test_toy_bad_input() -> None:
    with pytest.raises(WalkthroughError, match="empty"):
        toy("   ")
    with pytest.raises(WalkthroughError, match="at most 8 words"):
        toy("one two three four five six seven eight nine")
    with pytest.raises(WalkthroughError, match="Unknown mask"):
        toy("a b", "diagonal")
    one = toy("alone")
    assert one.weights.shape == (2, 1, 1) and (one.weights == 1).all()


def test_steps_cover_every_stage_and_rows_sum_to_one() -> None:
    walk = toy("the cat sat", "causal")
    shown = steps(walk, head=1)
    assert [s.key for s in shown] == [
        "inputs", "projections", "scores", "scale", "mask", "softmax", "weighted", "concat", "output",
    ]  # fmt: skip
    softmax = next(s for s in shown if s.key == "softmax").matrices[0]
    assert softmax.weights and np.allclose(softmax.values.sum(-1), 1)
    masked = next(s for s in shown if s.key == "mask").matrices[0].values
    assert np.isneginf(masked[0, 1]) and "3 of 9" in next(s for s in shown if s.key == "mask").explanation
    with pytest.raises(WalkthroughError, match="heads 0–1"):
        steps(walk, head=2)


def test_scaling_off_says_so() -> None:
    """With scaling off the scale step no longer claims a ×1 "keeps them moderate" or titles raw scores "scaled"."""
    on = next(s for s in steps(toy("the cat sat")) if s.key == "scale")
    off = next(s for s in steps(toy("the cat sat", scaled=False)) if s.key == "scale")
    assert "moderate" in on.explanation and on.matrices[0].name == "scaled scores"
    assert "moderate" not in off.explanation and "×1" not in off.explanation and "not multiplied" in off.explanation
    assert off.title == "Scaling is off" and off.matrices[0].name == "unscaled scores"
    np.testing.assert_array_equal(off.matrices[0].values, toy("the cat sat", scaled=False).scores[0])


@pytest.mark.slow
def test_smollm2_first_layer_equals_traced_weights(smollm2: LoadedModel) -> None:
    walk = first_layer(smollm2, SENTENCE)
    traced = trace(smollm2, SENTENCE, layers=[0])
    assert walk.tokens == traced.tokens and (walk.n_heads, walk.n_kv_heads) == (9, 3)
    assert np.abs(traced.attention[0] - walk.weights).max() < 1e-5
    assert [s.key for s in steps(walk, 4)][:3] == ["inputs", "projections", "rotary"]
    assert walk.kv_head(4) == 1
    for choice in MASK_CHOICES:
        check = verify(smollm2, SENTENCE, choice)
        assert check.passed, (choice, check)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2"])
def test_tiny_first_layer_equals_traced_weights(tiny: Callable[[str], LoadedModel], family: str) -> None:
    loaded = tiny(family)
    walk = first_layer(loaded, "Hello there, world", "causal")
    traced = trace(loaded, "Hello there, world", layers=[0])
    assert np.abs(traced.attention[0] - walk.weights).max() < 1e-5
    for choice in ("none", "strided", "padding"):
        assert verify(loaded, "Hello there, world", choice).passed


@pytest.mark.slow
def test_unsupported_models_and_long_sentences_are_refused(
    minilm: LoadedModel, smollm2: LoadedModel, tiny: Callable[[str], LoadedModel]
) -> None:
    with pytest.raises(WalkthroughError, match="encoder"):
        first_layer(minilm, "Hello")
    with pytest.raises(WalkthroughError, match="gpt2"):
        first_layer(tiny("gpt2"), "Hello")
    with pytest.raises(WalkthroughError, match="at most 16"):
        first_layer(smollm2, "word " * 40)
    with pytest.raises(WalkthroughError, match="empty"):
        first_layer(smollm2, "")
