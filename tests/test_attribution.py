"""Attribution methods on hand-built cases (tiny Llama, real SmolLM2) and their agreement/faithfulness maths."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnviz import attribution
from attnviz.attribution import (
    Case,
    PassageAttention,
    aggregate,
    agreement,
    attribute,
    choose_heads,
    faithfulness,
    passage_attention,
    spearman,
    synthetic_cases,
)
from attnviz.passages import build_prompt
from attnviz.trace import PromptError, record

PASSAGES = ["The cat sleeps on the warm mat.", "Paris is the capital of France.", "Nine plus one is ten."]


def test_spearman_and_agreement() -> None:
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 1.0, 1.0]), np.array([3.0, 2.0, 1.0])) == 0.0
    # ties get their average rank: ranks (1.5, 1.5, 3) vs (1, 2, 3)
    assert spearman(np.array([0.0, 0.0, 5.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(np.sqrt(3) / 2)
    agree = agreement(np.array([0.1, 0.7, 0.2]), np.array([0.5, 3.0, -0.1]))
    assert agree.top1_match and agree.spearman == pytest.approx(0.5)
    assert not agreement(np.array([0.9, 0.1]), np.array([0.0, 1.0])).top1_match


def test_faithfulness_picks_top_and_a_different_random_passage() -> None:
    drops = np.array([0.2, 5.0, -0.1, 0.4])
    result = faithfulness(np.array([0.1, 0.6, 0.2, 0.1]), drops, seed=3)
    assert result.top_passage == 1 and result.top_drop == pytest.approx(5.0)
    assert result.random_passage != 1 and result.random_drop == pytest.approx(drops[result.random_passage])
    assert result.mean_other_drop == pytest.approx(np.mean([0.2, -0.1, 0.4]))


def test_aggregate_selects_heads_layers_sink_and_shares() -> None:
    mass = np.zeros((2, 2, 1, 2))
    mass[0, 0, 0] = [0.1, 0.3]
    mass[1, 1, 0] = [0.4, 0.0]
    sink = np.full((2, 2, 1), 0.5)
    attention = PassageAttention(mass=mass, value_mass=mass * 2, sink=sink)
    np.testing.assert_allclose(aggregate(attention, heads=[(0, 0)]), [[0.1, 0.3]])
    np.testing.assert_allclose(aggregate(attention, layers=[1]), [[0.2, 0.0]])
    np.testing.assert_allclose(aggregate(attention), [[0.125, 0.075]])
    np.testing.assert_allclose(aggregate(attention, heads=[(0, 0)], exclude_sink=True), [[0.2, 0.6]])
    np.testing.assert_allclose(aggregate(attention, heads=[(0, 0)], shares=True), [[0.25, 0.75]])
    np.testing.assert_allclose(aggregate(attention, heads=[(0, 0)], value_weighted=True), [[0.2, 0.6]])
    with pytest.raises(PromptError):
        aggregate(attention, layers=[])


def test_choose_heads_finds_the_head_that_points_at_the_reference() -> None:
    rng = np.random.default_rng(0)
    shares, reference = [], []
    for _ in range(12):
        gold = int(rng.integers(3))
        case = rng.dirichlet(np.ones(3), size=(2, 3, 2))  # [layers, heads, tokens, passages]
        case[1, 2, :, :] = 0.05
        case[1, 2, :, gold] = 0.9  # the retrieval head
        shares.append(case)
        reference.append(gold)
    heads, hits, accuracy = choose_heads(shares, reference)
    assert heads[0] == (1, 2)
    assert hits[1, 2] == 1.0 and accuracy == 1.0


def test_passage_attention_equals_sums_of_the_full_recorded_weights(tiny) -> None:
    loaded = tiny("llama")
    prompt = build_prompt(loaded, "Where is Paris?", PASSAGES)
    answer_ids = np.array([100, 200, 300])
    reduced, logprobs = passage_attention(loaded, prompt, answer_ids)
    ids = torch.as_tensor(np.concatenate([prompt.ids, answer_ids]))[None]
    outputs, full = record(loaded, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    weights = full.weights["decoder"][0]  # [layers, heads, n, n]
    n_prompt = len(prompt.ids)
    rows = weights[:, :, n_prompt - 1 : n_prompt + 2]
    for index, (start, end) in enumerate(prompt.spans):
        np.testing.assert_allclose(reduced.mass[..., index], rows[..., start:end].sum(-1), atol=1e-5)
    np.testing.assert_allclose(reduced.sink, rows[..., 0], atol=1e-6)
    assert reduced.mass.shape == (loaded.n_layers, loaded.n_heads, 3, len(PASSAGES))
    expected = torch.log_softmax(outputs.logits[0, n_prompt - 1 : n_prompt + 2].float(), -1)
    np.testing.assert_allclose(
        logprobs, expected[torch.arange(3), torch.as_tensor(answer_ids)].numpy(), atol=1e-4
    )


def test_ablation_is_the_log_prob_drop_of_removing_each_passage(tiny) -> None:
    loaded = tiny("llama")
    result = attribute(loaded, "Where is Paris?", PASSAGES, method="ablation", answer="In France.")
    assert set(result.scores) == {"ablation"}
    without_second = build_prompt(loaded, "Where is Paris?", [PASSAGES[0], PASSAGES[2]])
    ablated = attribution.answer_logprobs(loaded, without_second.ids, result.answer_ids)
    np.testing.assert_allclose(result.scores["ablation"][:, 1], result.logprobs - ablated, atol=1e-4)
    assert result.scores["ablation"].shape == (len(result.answer_ids), len(PASSAGES))


def test_attribute_rejects_unknown_method_and_encoders(tiny, minilm) -> None:
    with pytest.raises(PromptError, match="Unknown attribution method"):
        attribute(tiny("llama"), "q?", PASSAGES, method="magic")
    with pytest.raises(PromptError, match="not a decoder"):
        attribute(minilm, "q?", PASSAGES, method="naive")


def test_attention_uses_the_given_heads_only(tiny) -> None:
    loaded = tiny("llama")
    result = attribute(
        loaded, "Where is Paris?", PASSAGES, method=("attention", "naive"), answer="Paris", heads=[(1, 3)]
    )
    assert result.heads == ((1, 3),)
    shares = result.attention.mass[1, 3] / (1 - result.attention.sink[1, 3])[..., None]
    np.testing.assert_allclose(result.scores["attention"], shares / shares.sum(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(result.scores["naive"], result.attention.mass.mean(axis=(0, 1)), rtol=1e-5)


def test_synthetic_cases_hold_their_answer_in_the_gold_passage() -> None:
    cases = synthetic_cases(20, seed=1)
    assert cases == synthetic_cases(20, seed=1)  # deterministic for the cache
    for case in cases:
        assert case.answer_contains in case.passages[case.gold]
        assert sum(case.answer_contains in p for p in case.passages) == 1
        assert 3 <= len(case.passages) <= 5


def test_calibration_is_cached_on_disk_and_used_by_evaluate_rag(tiny, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    loaded = tiny("llama")
    first = attribution.calibration(loaded)  # tiny random model: heads are whatever scores best
    files = list((tmp_path / "calibration").glob("*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["heads"] == [list(h) for h in first.heads]
    again = attribution.calibration(loaded)
    assert again.heads == first.heads and again.n_cases == first.n_cases == attribution.CALIBRATION_CASES
    assert 1 <= len(first.heads) <= loaded.n_layers * loaded.n_heads
    # evaluate_rag reuses the cached calibration; "" is contained in any answer, so every case counts
    cases = [
        Case("Where is Paris?", tuple(PASSAGES), 1, ""),
        {"question": "What sleeps?", "passages": PASSAGES, "gold": 0, "answer_contains": ""},
    ]
    summary = attribution.evaluate_rag(loaded, cases)
    assert summary["cases"] == summary["answered_correctly"] == 2
    assert summary["calibration"]["heads"] == [list(h) for h in first.heads]
    for method in attribution.METHODS:
        hits = [row[f"top1_{method}"] == row["gold"] for row in summary["rows"]]
        assert summary[f"top1_{method}"] == pytest.approx(np.mean(hits))
    assert summary["seconds_ablation"] > 0 and summary["seconds_attention"] > 0


@pytest.mark.slow
def test_smollm2_end_to_end_finds_the_answer_passage(smollm2) -> None:
    case = Case(
        "What does the bakery on Elm Lane sell on Sundays?",
        (
            "Whales communicate using a wide range of sounds.",
            "On Sundays the bakery on Elm Lane sells only cinnamon rolls.",
            "The highway was closed for repairs during the whole of March.",
        ),
        1,
        "cinnamon",
    )
    result = attribute(smollm2, case.question, case.passages)
    assert "cinnamon" in result.answer.lower()
    assert result.ranking("ablation")[0] == 1
    assert result.ranking("attention")[0] == 1
    assert result.heads
    data = attribution.export_json(result)
    assert data["answer"] == result.answer and len(data["scores"]["attention"]) == 3
    assert len(attribution.export_rows(result)) == len(result.answer_tokens) * 3


def test_cli_attribute_writes_answer_and_scores_per_case(tmp_path, tiny_model_dir) -> None:
    cases = tmp_path / "in.jsonl"
    rows = [
        {"question": "Where is Paris?", "passages": PASSAGES, "id": "a"},
        {"question": "What sleeps?", "passages": PASSAGES[:2]},
    ]
    cases.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "ATTNVIZ_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "attnviz", "attribute", "--cases", str(cases), "--out", str(out)]
    model = ["--model", str(tiny_model_dir("llama"))]
    result = subprocess.run(
        command + model, check=False, capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [w["question"] for w in written] == [r["question"] for r in rows] and written[0]["id"] == "a"
    for line, row in zip(written, rows, strict=True):
        assert isinstance(line["answer"], str)
        assert set(line["scores"]) == {"attention", "ablation"}
        assert all(len(s) == len(row["passages"]) for s in line["scores"].values())
    cases.write_text('{"question": "no passages"}\n')
    bad = subprocess.run(command + model, check=False, capture_output=True, text=True, timeout=600, env=env)
    assert bad.returncode == 2 and "line 1" in bad.stderr
