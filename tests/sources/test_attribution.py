"""Attribution methods on hand-built cases (tiny Llama, real SmolLM2) and their agreement/faithfulness maths."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from attnviz.sources import attribution
from attnviz.sources.ablation import planned_passes
from attnviz.sources.attention import answer_logprobs
from attnviz.sources.attribution import attribute
from attnviz.sources.calibration import Case
from attnviz.sources.demo import DEMO_CASES
from attnviz.sources.passages import build_prompt
from attnviz.tracing.inputs import PromptError

PASSAGES = ["The cat sleeps on the warm mat.", "Paris is the capital of France.", "Nine plus one is ten."]


def test_ablation_is_the_log_prob_drop_of_removing_each_passage(tiny) -> None:
    loaded = tiny("llama")
    result = attribute(loaded, "Where is Paris?", PASSAGES, method="ablation", answer="In France.")
    assert set(result.scores) == {"ablation"}
    without_second = build_prompt(loaded, "Where is Paris?", [PASSAGES[0], PASSAGES[2]])
    ablated = answer_logprobs(loaded, without_second.ids, result.answer_ids)
    np.testing.assert_allclose(result.scores["ablation"][:, 1], result.logprobs - ablated, atol=1e-4)
    assert result.scores["ablation"].shape == (len(result.answer_ids), len(PASSAGES))


def test_ablation_checked_later_equals_ablation_at_once(tiny) -> None:
    """The page shows attention first and checks by ablation on request: the scores of all methods at once."""
    loaded = tiny("llama")
    ask = {"answer": "In France.", "heads": [(1, 3)], "max_leave_one_out": 2, "passes": 6}
    first = attribute(loaded, "Where is Paris?", PASSAGES, method=("attention", "naive"), **ask)
    assert first.ablation is None and set(first.scores) == {"attention", "naive"}
    later = attribution.check_by_ablation(loaded, first, passes=6, max_leave_one_out=2)
    at_once = attribute(loaded, "Where is Paris?", PASSAGES, **ask)
    assert list(later.scores) == list(at_once.scores) == list(attribution.METHODS)
    assert later.ablation.kind == "subsets"
    assert later.ablation.passes == planned_passes(len(PASSAGES), 6, 2) == 6
    for method in attribution.METHODS:
        np.testing.assert_allclose(later.scores[method], at_once.scores[method], atol=1e-5)
    assert set(later.seconds) == {"generate", "attention", "ablation"}


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


@pytest.mark.slow
def test_pasted_answer_gives_the_same_scores_as_the_same_text_generated(smollm2) -> None:
    question, passages = DEMO_CASES[0].question, DEMO_CASES[0].passages
    heads = [(12, 1), (20, 4), (27, 8)]  # any fixed heads: this is about teacher forcing, not calibration
    generated = attribute(smollm2, question, passages, heads=heads)
    pasted = attribute(smollm2, question, passages, answer=generated.answer, heads=heads)
    assert (generated.answer_origin, pasted.answer_origin) == ("generated", "pasted")
    np.testing.assert_array_equal(pasted.answer_ids, generated.answer_ids)
    np.testing.assert_allclose(pasted.logprobs, generated.logprobs, atol=1e-5)
    for method in ("attention", "naive", "ablation"):
        np.testing.assert_allclose(pasted.scores[method], generated.scores[method], atol=1e-5)
    data = attribution.export_json(pasted)
    assert data["answer_origin"] == "pasted" and data["granularity"] == "passage"
    assert data["ablation"] == {"kind": "leave-one-out", "forward_passes": len(passages)}
    assert data["answer_logprob"] == pytest.approx(float(pasted.logprobs.sum()), abs=1e-5)


def test_export_names_granularity_origin_and_calibration(tiny, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    result = attribute(tiny("llama"), "Where is Paris?", PASSAGES, answer="Paris", granularity="sentence")
    data = attribution.export_json(result)
    assert data["granularity"] == "sentence" and data["answer_origin"] == "pasted"
    assert [s["label"] for s in data["sources"]] == ["[1.1]", "[2.1]", "[3.1]"]
    assert data["calibration"]["held_out_cases"] > 0 and "held_out_accuracy" in data["calibration"]
    assert data["heads"] == data["calibration"]["heads"]
    rows = attribution.export_rows(result)
    assert {row["granularity"] for row in rows} == {"sentence"} and rows[0]["source"] == "[1.1]"


def test_pasted_answer_limits(tiny) -> None:
    with pytest.raises(PromptError, match="pasted answer is empty"):
        attribute(tiny("llama"), "q?", PASSAGES, method="naive", answer="  ")
    with pytest.raises(PromptError, match="at most 128"):
        attribute(tiny("llama"), "q?", PASSAGES, method="naive", answer="word " * 300)


def test_token_shares_sum_over_a_source_to_its_attention_score(tiny) -> None:
    loaded = tiny("llama")
    result = attribute(
        loaded, "Where is Paris?", PASSAGES, method="attention", answer="Paris", heads=[(1, 3), (0, 1)]
    )
    tokens = result.attention.tokens
    per_source = np.stack([tokens[:, s:e].sum(-1) for s, e in result.prompt.spans], axis=-1)
    np.testing.assert_allclose(per_source, result.scores["attention"], atol=1e-5)


def test_cli_attribute_writes_answer_and_scores_per_case(tmp_path, tiny_model_dir) -> None:
    cases = tmp_path / "in.jsonl"
    rows = [
        {"question": "Where is Paris?", "passages": PASSAGES, "id": "a"},
        {"question": "What sleeps?", "passages": PASSAGES[:2], "answer": "The cat."},
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
    assert written[1]["answer"] == "The cat." and written[1]["answer_origin"] == "pasted"
    assert written[0]["answer_origin"] == "generated" and written[0]["answer_logprob"] < 0
    for line, row in zip(written, rows, strict=True):
        assert isinstance(line["answer"], str)
        assert set(line["scores"]) == {"attention", "ablation"}
        assert all(len(s) == len(row["passages"]) for s in line["scores"].values())
    cases.write_text('{"question": "no passages"}\n')
    bad = subprocess.run(command + model, check=False, capture_output=True, text=True, timeout=600, env=env)
    assert bad.returncode == 2 and "line 1" in bad.stderr
