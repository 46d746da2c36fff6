"""Every library entry point on a bfloat16 model, on the CPU, against the same model in float32.

No GPU is lent to this project, so bf16 correctness is checked here: the tiny random models are
loaded twice through ``attnviz.load_model`` (the real from_pretrained path), once per dtype, and
each entry point's bf16 result must equal its float32 result within a bf16 tolerance. bf16 keeps 8
significant bits: one unit in the last place is 2**-8 ≈ 0.004 just below 1.0.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import attnviz
from attnviz.heads.ablation import ablate_heads
from attnviz.heads.aggregate import aggregate_map, reduced_aggregate, value_norms
from attnviz.heads.stats import head_stats, induction_scores
from attnviz.heads.summary import summarise
from attnviz.hooks import Site
from attnviz.learn.recompute import first_layer
from attnviz.learn.verify import verify
from attnviz.learn.walkthrough import MASK_CHOICES
from attnviz.masks import builders as masks
from attnviz.masks.runs import compare_mask, prompt_tokens
from attnviz.models.loading import LoadedModel
from attnviz.sources.answers import AnswerRequest, answer_batch
from attnviz.sources.attention import passage_attention, retrieval_batch
from attnviz.sources.attribution import METHODS, attribute
from attnviz.sources.calibration import calibrate, case_shares, synthetic_cases
from attnviz.sources.passages import build_prompt
from attnviz.tracing.layer_inputs import keep_inputs
from attnviz.tracing.stacks import StackView, stack_view
from attnviz.tracing.trace import trace
from attnviz.views import bertviz as bv
from attnviz.views import vendor
from tests.views.test_bertviz import payload

TEXT = "The cat sat on the mat because the cat was tired of the mat"
PASSAGES = ("Paris is the capital of France.", "Berlin is in Germany.", "Rome is in Italy.")
# Attention weights lie in [0, 1]: about one bf16 unit at 1.0 (2**-8; the largest difference measured on these
# models is 1.7e-3). Values (logits, norms, log-probs, statistics) get a relative tolerance of 1%.
WEIGHTS_ATOL = 5e-3
RTOL = 1e-2

Pair = tuple[LoadedModel, LoadedModel]


@pytest.fixture(scope="module")
def pair(tiny_model_dir: Callable[[str], Path]) -> Callable[[str], Pair]:
    """(float32, bfloat16) loads of one tiny family's saved folder, on the CPU."""
    loaded: dict[str, Pair] = {}

    def get(family: str) -> Pair:
        if family not in loaded:
            folder = str(tiny_model_dir(family))
            loaded[family] = tuple(  # type: ignore[assignment]
                attnviz.load_model(folder, device="cpu", dtype=dtype) for dtype in ("float32", "bfloat16")
            )
        return loaded[family]

    return get


def close(bf16: np.ndarray, fp32: np.ndarray, atol: float = WEIGHTS_ATOL, rtol: float = RTOL) -> None:
    ours, reference = np.asarray(bf16, dtype=np.float64), np.asarray(fp32, dtype=np.float64)
    np.testing.assert_allclose(ours, reference, atol=atol, rtol=rtol)


def test_dtype_option_loads_bfloat16_through_from_pretrained(pair: Callable[[str], Pair]) -> None:
    fp32, bf16 = pair("llama")
    assert (fp32.dtype, bf16.dtype) == (torch.float32, torch.bfloat16)
    assert bf16.device_label == "cpu · bfloat16"
    assert all(p.dtype == torch.bfloat16 for p in bf16.model.parameters())
    assert fp32.fingerprint != bf16.fingerprint  # results computed in one dtype are not reused for the other


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert"])
def test_trace(pair: Callable[[str], Pair], family: str) -> None:
    fp32, bf16 = pair(family)
    ours, reference = trace(bf16, TEXT), trace(fp32, TEXT)
    assert ours.tokens == reference.tokens
    assert not np.array_equal(ours.attention, reference.attention)  # really computed in bf16
    close(ours.attention, reference.attention)
    close(ours.thumbnails, reference.thumbnails)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_summary(pair: Callable[[str], Pair], family: str) -> None:
    fp32, bf16 = pair(family)
    ours, reference = summarise(bf16, TEXT), summarise(fp32, TEXT)
    assert ours.dtype == "bfloat16" and reference.dtype == "float32"
    close(ours.thumbnails, reference.thumbnails)
    close(ours.head_stats, reference.head_stats, atol=1e-2)


@pytest.mark.parametrize("method", METHODS)
def test_attribute_with_each_method(pair: Callable[[str], Pair], method: str) -> None:
    fp32, bf16 = pair("llama")
    heads = [(0, 1), (1, 2)]
    ours, reference = (
        attribute(m, "Where is Paris?", PASSAGES, method=method, answer="In France.", heads=heads)
        for m in (bf16, fp32)
    )
    np.testing.assert_array_equal(ours.answer_ids, reference.answer_ids)
    close(ours.logprobs, reference.logprobs, atol=1e-2)
    atol = 1e-2 if method == "ablation" else WEIGHTS_ATOL  # ablation: log-prob drops, not weights
    close(ours.scores[method], reference.scores[method], atol=atol)


def test_retrieval_batch(pair: Callable[[str], Pair]) -> None:
    """A study's batched orders (left-padded rows) in bf16 against float32."""
    fp32, bf16 = pair("llama")
    orders = (PASSAGES, (PASSAGES[2] + " It is old.", PASSAGES[0], PASSAGES[1]))
    ours, reference = (
        retrieval_batch(
            m, [build_prompt(m, "Where is Paris?", p) for p in orders], np.array([5, 6]), [(0, 1), (1, 2)]
        )
        for m in (bf16, fp32)
    )
    close(ours[0], reference[0])
    close(ours[1], reference[1], atol=1e-2)


def test_generated_answer_runs_in_bf16(pair: Callable[[str], Pair]) -> None:
    """generate() gets its ids and mask on the model's device; greedy decoding gives an answer to score."""
    _, bf16 = pair("llama")
    result = attribute(bf16, "Where is Paris?", PASSAGES, method="naive", max_new_tokens=4, heads=[(0, 0)])
    assert 0 < len(result.answer_ids) <= 4
    assert result.scores["naive"].shape == (len(result.answer_ids), len(PASSAGES))


def test_batched_answers_in_bf16(pair: Callable[[str], Pair]) -> None:
    """A left-padded batch (mask, positions) generates in bf16; each answer's attention pass matches float32's."""
    fp32, bf16 = pair("llama")
    prompts = [
        build_prompt(bf16, "Where is Paris?", PASSAGES),
        build_prompt(bf16, "Which of these cities is in Germany?", PASSAGES[:2]),
    ]
    answered = answer_batch(bf16, [AnswerRequest(p, ((0, 1),), 4) for p in prompts])
    for prompt, got in zip(prompts, answered, strict=True):
        assert 0 < len(got.answer_ids) <= 4
        reference, logprobs = passage_attention(fp32, prompt, got.answer_ids, ((0, 1),))
        close(got.attention.mass, reference.mass)
        close(got.logprobs, logprobs, atol=1e-2)


def test_calibrate(pair: Callable[[str], Pair]) -> None:
    fp32, bf16 = pair("llama")
    for case in synthetic_cases(4):
        close(case_shares(bf16, case), case_shares(fp32, case))
    ours, reference = calibrate(bf16, n_cases=4), calibrate(fp32, n_cases=4)
    # Hit rates over 2 cases are 0, ½ or 1: the shares agree closely enough that no head's top passage moves.
    np.testing.assert_array_equal(ours.head_accuracy, reference.head_accuracy)
    assert ours.heads == reference.heads


def test_compare_masks(pair: Callable[[str], Pair]) -> None:
    fp32, bf16 = pair("llama")
    ids, _ = prompt_tokens(fp32, TEXT)
    allowed = masks.sliding_window(len(ids), 3)
    ours, reference = compare_mask(bf16, ids, allowed), compare_mask(fp32, ids, allowed)
    close(ours.masked.attention, reference.masked.attention)
    close(ours.original.attention, reference.original.attention)
    assert ours.masked.loss == pytest.approx(reference.masked.loss, rel=RTOL)
    close(ours.masked.prediction.probs, reference.masked.prediction.probs, atol=1e-3)
    assert ours.output_change == pytest.approx(reference.output_change, rel=0.2, abs=2e-2)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_walkthrough_verify(pair: Callable[[str], Pair], family: str) -> None:
    fp32, bf16 = pair(family)
    for choice in MASK_CHOICES:
        check = verify(bf16, TEXT, choice)
        assert check.passed and check.dtype == "bfloat16", (choice, check)
        assert check.weights_tolerance == pytest.approx(2 * 2**-7)
    ours, reference = first_layer(bf16, TEXT), first_layer(fp32, TEXT)
    close(ours.weights, reference.weights)
    close(ours.output, reference.output, atol=5e-3)


def test_ablate(pair: Callable[[str], Pair]) -> None:
    fp32, bf16 = pair("llama")
    ablate = {Site("decoder", 0): (0, 1), Site("decoder", 1): (2,)}
    ours, reference = (ablate_heads(m, trace(m, TEXT), ablate, k=5) for m in (bf16, fp32))
    close(ours.intervened.probs, reference.intervened.probs, atol=1e-4)
    close(ours.baseline.probs, reference.baseline.probs, atol=1e-4)
    fp32_shift = reference.intervened.probs - reference.baseline.probs
    assert np.abs(fp32_shift).max() > 0  # the ablation changes the prediction at all


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_aggregates_with_value_norms(pair: Callable[[str], Pair], family: str) -> None:
    fp32, bf16 = pair(family)
    maps: list[np.ndarray] = []
    for loaded in (bf16, fp32):
        traced = trace(loaded, TEXT)
        view: StackView = stack_view(traced, loaded.main_stack)
        norms = value_norms(loaded, traced)
        maps.append(norms.norms)
        names = ("layer mean", "rollout", "value-norm weighted")
        maps.extend(aggregate_map(view, name, 1, norms) for name in names)
        _, kept = keep_inputs(loaded, partial(summarise, loaded, TEXT))
        maps.extend(reduced_aggregate(loaded, kept, name, 1) for name in names)
    half = len(maps) // 2
    close(maps[0], maps[half], atol=0.0)  # norms: relative
    for ours, reference in zip(maps[1:half], maps[half + 1 :], strict=True):
        close(ours, reference)


def test_statistics(pair: Callable[[str], Pair]) -> None:
    fp32, bf16 = pair("llama")
    ours, reference = (trace(m, TEXT) for m in (bf16, fp32))
    mine = head_stats(ours.attention, ours.layers, ours.heads)
    theirs = head_stats(reference.attention, reference.layers, reference.heads)
    for name in ("entropy", "first_token", "distance", "previous_token"):
        close(getattr(mine, name), getattr(theirs, name), atol=1e-2)
    close(induction_scores(bf16, period=12), induction_scores(fp32, period=12))


@pytest.mark.parametrize("view", bv.VIEWS)
def test_bertviz_views(pair: Callable[[str], Pair], view: bv.ViewKind) -> None:
    vendor.ensure()
    fp32, bf16 = pair("llama")
    sent = []
    for loaded in (bf16, fp32):
        traced = trace(loaded, TEXT)
        built = bv.build_view(traced, view, bv.default_selection(traced, view))
        sent.append(payload(built.html))
    assert sent[0]["scale"] == sent[1]["scale"] == 1000
    for ours, reference in zip(sent[0]["attention"], sent[1]["attention"], strict=True):
        assert ours["left_text"] == reference["left_text"]
        close(np.asarray(ours["attn"]) / 1000, np.asarray(reference["attn"]) / 1000)
