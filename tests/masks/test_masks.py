"""Mask builders agree with transformers, have the expected density, and apply exactly."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from transformers.masking_utils import (
    and_masks,
    bidirectional_mask_function,
    blockwise_overlay,
    causal_mask_function,
    or_masks,
    sdpa_mask,
    sliding_window_causal_mask_function,
)

from attnviz.hooks import Hooks
from attnviz.masks import builders as masks
from attnviz.masks import rules as mask_rules
from attnviz.masks import runs as mask_runs
from attnviz.models.loading import LoadedModel
from attnviz.tracing.forward import forward
from attnviz.tracing.inputs import encode
from attnviz.tracing.trace import record

PROMPT = "The capital of France is Paris. The capital of Italy is"


def transformers_mask(n: int, function: Callable[..., object]) -> np.ndarray:
    """The boolean [n, n] mask transformers' sdpa_mask builds from a mask function."""
    built = sdpa_mask(
        batch_size=1, q_length=n, kv_length=n, mask_function=function, allow_is_causal_skip=False
    )
    return built[0, 0].numpy()


def count_pairs(n: int, allowed: Callable[[int, int], bool]) -> int:
    """Entries by direct enumeration of the definition, independent of the vectorised builders."""
    return sum(1 for q in range(n) for k in range(n) if allowed(q, k))


# --- builders vs transformers ---------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 33])
def test_causal_and_bidirectional_match_transformers(n: int) -> None:
    np.testing.assert_array_equal(masks.causal(n), transformers_mask(n, causal_mask_function))
    np.testing.assert_array_equal(masks.bidirectional(n), transformers_mask(n, bidirectional_mask_function))


@pytest.mark.parametrize(("n", "window"), [(10, 1), (10, 4), (33, 8), (5, 9)])
def test_sliding_window_matches_transformers(n: int, window: int) -> None:
    expected = transformers_mask(n, sliding_window_causal_mask_function(window))
    np.testing.assert_array_equal(masks.sliding_window(n, window), expected)
    for family in ("mistral", "gemma2"):
        np.testing.assert_array_equal(masks.transformers_sliding_window(n, window, family), expected)


def test_prefix_lm_and_block_diagonal_match_transformers_overlays() -> None:
    n, prefix = 12, 5
    prefix_groups = torch.tensor([[0] * prefix + [-1] * (n - prefix)])
    expected = transformers_mask(n, or_masks(causal_mask_function, blockwise_overlay(prefix_groups)))
    np.testing.assert_array_equal(masks.prefix_lm(n, prefix), expected)
    segments = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    same_segment = blockwise_overlay(torch.tensor(segments)[None])
    expected = transformers_mask(n, and_masks(causal_mask_function, same_segment))
    np.testing.assert_array_equal(masks.block_diagonal(segments), expected)
    np.testing.assert_array_equal(
        masks.block_diagonal(segments, within=masks.bidirectional), transformers_mask(n, same_segment)
    )


# --- densities ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 16, 100])
def test_each_pattern_has_the_expected_density(n: int) -> None:
    window, stride, prefix = 4, max(1, math.isqrt(n)), n // 3
    expected = {
        "causal": (masks.causal(n), n * (n + 1) // 2),
        "bidirectional": (masks.bidirectional(n), n * n),
        "sliding": (masks.sliding_window(n, window), sum(min(q + 1, window) for q in range(n))),
        "strided": (
            masks.strided(n, stride),
            sum(min(q, stride) + 1 + max(0, q // stride - 1) for q in range(n)),
        ),
        "prefix": (masks.prefix_lm(n, prefix), n * (n + 1) // 2 + prefix * (prefix - 1) // 2),
    }
    for name, (allowed, kept) in expected.items():
        stats = masks.mask_stats(allowed)
        assert stats.kept == kept, name
        assert stats.full == n * n
        assert stats.density == pytest.approx(kept / (n * n)), name


def test_strided_keeps_n_sqrt_n_entries_as_child_et_al() -> None:
    for n in (64, 256, 1024):
        stride = math.isqrt(n)
        kept = masks.mask_stats(masks.strided(n, stride)).kept
        assert kept == count_pairs(n, lambda q, k, s=stride: 0 <= q - k <= s or (q >= k and (q - k) % s == 0))
        assert n * stride <= kept <= 2 * n * stride  # O(n√n), far below n²/2
        assert kept < n * (n + 1) // 2 or n <= 4


def test_block_diagonal_density_is_sum_of_segment_triangles() -> None:
    tokens = ["A", " cat", ".", " A", " dog", " ran", ".", " End"]
    segments = masks.segments_after(tokens, ".")
    np.testing.assert_array_equal(segments, [0, 0, 0, 1, 1, 1, 1, 2])
    assert masks.mask_stats(masks.block_diagonal(segments)).kept == 6 + 10 + 1


def test_future_entries_are_counted() -> None:
    assert masks.mask_stats(masks.causal(9)).future == 0
    assert masks.mask_stats(masks.bidirectional(9)).future == 36
    assert masks.mask_stats(masks.prefix_lm(9, 4)).future == 6


def test_pattern_names() -> None:
    assert masks.pattern_name(masks.causal(6)) == "causal"
    assert masks.pattern_name(masks.bidirectional(6)) == "bidirectional (everything allowed)"
    assert masks.pattern_name(masks.sliding_window(9, 3)) == "sliding window of 3"
    assert masks.pattern_name(masks.strided(9, 2)) == "custom"
    assert masks.pattern_name(np.ones((2, 5), dtype=bool)) == "bidirectional (everything allowed)"
    assert masks.pattern_name(np.eye(2, 5, dtype=bool)) == "custom"


# --- custom rules ---------------------------------------------------------------------------


def test_rule_builds_the_same_masks_as_builders() -> None:
    n = 17
    np.testing.assert_array_equal(mask_rules.from_rule(n, "k <= q"), masks.causal(n))
    np.testing.assert_array_equal(mask_rules.from_rule(n, "k <= q and q - k < 4"), masks.sliding_window(n, 4))
    np.testing.assert_array_equal(mask_rules.from_rule(n, "0 <= q - k < 4"), masks.sliding_window(n, 4))
    np.testing.assert_array_equal(
        mask_rules.from_rule(n, "q >= k and (q - k <= 3 or (q - k) % 3 == 0)"), masks.strided(n, 3)
    )
    np.testing.assert_array_equal(mask_rules.from_rule(n, "k <= q or max(q, k) < 5"), masks.prefix_lm(n, 5))
    np.testing.assert_array_equal(mask_rules.from_rule(n, "abs(q - k) <= n // 8"), np.abs(np.subtract.outer(
        np.arange(n), np.arange(n))) <= 2)  # fmt: skip
    np.testing.assert_array_equal(mask_rules.from_rule(n, "not k > q"), masks.causal(n))
    np.testing.assert_array_equal(mask_rules.from_rule(3, "True"), masks.bidirectional(3))


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("", "empty"),
        ("__import__('os').system('echo hacked')", "Not allowed"),
        ("q.__class__", "Not allowed"),
        ("open('x')", "Not allowed"),
        ("x < q", "Unknown name"),
        ("q - k", "condition"),
        ("k <= q and", "not a valid expression"),
        ("q % 0 == 1", "zero"),
        ("(k < q) + 1 > 0", "number is expected"),
        ("k and q", "comparisons"),
        ("q ** 99999 > 0", "Not allowed"),
        ("k < q " * 60, "longer"),
        ("q < 1.5", "Not allowed"),
        ("abs(q, k) > 0", "argument"),
    ],
)
def test_bad_rules_are_refused_with_a_reason(rule: str, message: str) -> None:
    with pytest.raises(mask_rules.MaskRuleError, match=message):
        mask_rules.from_rule(5, rule)


# --- masks the model really used ------------------------------------------------------------


def test_decoder_uses_causal_mask_and_padding(smollm2: LoadedModel) -> None:
    read = mask_runs.read_masks(smollm2, ["Hi there", "A longer prompt with more tokens in it"])
    assert len(read.groups) == 1
    group = read.groups[0]
    assert group.stack == "decoder" and group.layers == tuple(range(smollm2.n_layers))
    width = len(read.tokens[1])
    short = int((~read.padding[0]).sum())
    assert short < width and not read.padding[1].any()
    np.testing.assert_array_equal(group.allowed[1], masks.causal(width))
    expected_short = masks.causal(width) & ~read.padding[0][None, :]
    np.testing.assert_array_equal(group.allowed[0], expected_short)


def test_chat_template_prompt_mask_is_causal_over_template_tokens(smollm2: LoadedModel) -> None:
    messages = [{"role": "user", "content": "What is 2+2?"}]
    read = mask_runs.read_masks(smollm2, [messages])
    ids = encode(smollm2, messages=messages)
    assert len(read.tokens[0]) == len(ids) > 10
    assert "<|im_start|>" in read.tokens[0]
    np.testing.assert_array_equal(read.groups[0].allowed[0], masks.causal(len(ids)))


def test_encoder_mask_is_bidirectional_with_padding(minilm: LoadedModel) -> None:
    read = mask_runs.read_masks(minilm, ["short", "a rather longer sentence here"])
    assert {g.stack for g in read.groups} == {"encoder"}
    allowed = read.groups[0].allowed
    assert allowed[1].all()
    np.testing.assert_array_equal(allowed[0], np.broadcast_to(~read.padding[0], allowed[0].shape))


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_sliding_window_models_use_transformers_window(tiny, family: str) -> None:
    loaded = tiny(family)
    read = mask_runs.read_masks(loaded, ["one two three four five six seven eight nine ten"])
    n = len(read.tokens[0])
    by_layers = {g.layers: g.allowed[0] for g in read.groups}
    window = masks.sliding_window(n, 4)
    if family == "mistral":
        np.testing.assert_array_equal(by_layers[(0, 1)], window)
    else:  # Gemma 2 alternates sliding-window and full causal layers
        np.testing.assert_array_equal(by_layers[(0,)], window)
        np.testing.assert_array_equal(by_layers[(1,)], masks.causal(n))
    np.testing.assert_array_equal(masks.transformers_sliding_window(n, 4, family), window)


def test_encoder_decoder_masks_have_cross_attention(tiny) -> None:
    read = mask_runs.read_masks(tiny("t5"), ["translate this sentence"], target="une phrase")
    stacks = {g.stack: g for g in read.groups}
    assert set(stacks) == {"encoder", "decoder", "cross"}
    n, t = len(read.tokens[0]), len(read.target_tokens)
    assert stacks["cross"].allowed.shape == (1, t, n) and stacks["cross"].allowed.all()
    np.testing.assert_array_equal(stacks["decoder"].allowed[0], masks.causal(t))
    assert stacks["encoder"].allowed.all()
    assert read.axes("cross", 0) == (read.target_tokens, read.tokens[0])


# --- applying masks ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompt_ids(smollm2: LoadedModel) -> list[int]:
    return encode(smollm2, PROMPT)


def test_causal_mask_reproduces_the_unmasked_decoder_exactly(smollm2: LoadedModel, prompt_ids) -> None:
    result = mask_runs.compare_mask(smollm2, prompt_ids, masks.causal(len(prompt_ids)))
    assert result.output_change == 0.0  # every logit bit-identical
    np.testing.assert_array_equal(result.masked.attention, result.original.attention)
    assert result.masked.loss == result.original.loss
    np.testing.assert_array_equal(
        result.masked.prediction.probs, result.original.prediction.probs
    )
    assert result.original.prediction.tokens[0] == " Rome"
    assert result.future_attention == 0.0


def test_bidirectional_mask_changes_decoder_output_it_sees_the_future(
    smollm2: LoadedModel, prompt_ids
) -> None:
    n = len(prompt_ids)
    result = mask_runs.compare_mask(smollm2, prompt_ids, masks.bidirectional(n))
    assert result.output_change > 1.0
    assert result.masked.loss != pytest.approx(result.original.loss, abs=1e-3)
    assert result.future_attention > 0.05
    later = np.triu(np.ones((n, n), dtype=bool), 1)
    assert (result.original.attention[..., later] == 0).all()
    assert (result.masked.attention[..., later] > 0).all()


@pytest.mark.parametrize("pattern", ["sliding", "strided", "prefix", "block", "rule"])
def test_masked_entries_get_exactly_zero_weight(smollm2: LoadedModel, prompt_ids, pattern: str) -> None:
    n = len(prompt_ids)
    allowed = {
        "sliding": masks.sliding_window(n, 3),
        "strided": masks.strided(n, 4),
        "prefix": masks.prefix_lm(n, 6),
        "block": masks.block_diagonal(np.repeat(np.arange(3), -(-n // 3))[:n]),
        "rule": mask_rules.from_rule(n, "k <= q and (k == 0 or q - k < 2)"),
    }[pattern]
    inputs = {"input_ids": torch.tensor([prompt_ids])}
    _, recording = record(smollm2, inputs, layers=[0, 29], mask=torch.from_numpy(allowed))
    weights = recording.weights["decoder"][0]
    assert (weights[..., ~allowed] == 0.0).all()
    assert (weights[..., allowed] > 0.0).all()
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-5)


def test_encoder_accepts_a_causal_mask(minilm: LoadedModel) -> None:
    ids = encode(minilm, "masks change what an encoder sees")
    result = mask_runs.compare_mask(minilm, ids, masks.causal(len(ids)))
    assert result.original.prediction is None and result.masked.loss is None
    assert result.output_change > 0.01
    assert (result.masked.attention[..., ~masks.causal(len(ids))] == 0).all()
    assert result.original.attention.min() > 0


def test_bad_masks_are_refused(smollm2: LoadedModel, prompt_ids, tiny) -> None:
    n = len(prompt_ids)
    with pytest.raises(ValueError, match="tokens"):
        mask_runs.compare_mask(smollm2, prompt_ids, masks.causal(n + 1))
    empty_row = masks.causal(n)
    empty_row[3] = False
    with pytest.raises(ValueError, match="empty"):
        mask_runs.compare_mask(smollm2, prompt_ids, empty_row)
    with pytest.raises(ValueError, match="decoder-only"):
        mask_runs.compare_mask(tiny("t5"), [5, 6], masks.causal(2))


def test_hooks_mask_is_only_used_inside_the_context(smollm2: LoadedModel, prompt_ids) -> None:
    ids = torch.tensor([prompt_ids])
    plain = forward(smollm2, {"input_ids": ids}).logits
    masked = forward(
        smollm2, {"input_ids": ids}, Hooks(mask=torch.from_numpy(masks.bidirectional(len(prompt_ids))))
    )
    again = forward(smollm2, {"input_ids": ids}).logits
    assert not torch.allclose(plain, masked.logits)
    torch.testing.assert_close(plain, again, rtol=0, atol=0)
