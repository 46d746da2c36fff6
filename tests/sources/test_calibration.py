"""Retrieval-head calibration: head choice, synthetic cases, and the fingerprint-keyed disk cache."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import torch

from attnviz.models.loading import LoadedModel, load_model
from attnviz.sources.calibration import (
    CALIBRATION_CASES,
    HEAD_COUNTS,
    Case,
    calibrate,
    calibration,
    choose_heads,
    split_cases,
    synthetic_cases,
)
from attnviz.sources.passages import build_prompt


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


def test_synthetic_cases_hold_their_answer_in_the_gold_passage() -> None:
    cases = synthetic_cases(20, seed=1)
    assert cases == synthetic_cases(20, seed=1)  # deterministic for the cache
    for case in cases:
        assert case.answer_contains in case.passages[case.gold]
        assert sum(case.answer_contains in p for p in case.passages) == 1
        assert 3 <= len(case.passages) <= 5


def test_calibration_is_cached_on_disk(tiny, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    loaded = tiny("llama")
    first = calibration(loaded)  # tiny random model: heads are whatever scores best
    files = list((tmp_path / "calibration").glob("*.json"))
    assert len(files) == 1
    assert json.loads(files[0].read_text())["heads"] == [list(h) for h in first.heads]
    again = calibration(loaded)
    assert again.heads == first.heads and again.n_choose + again.n_held_out == CALIBRATION_CASES
    assert 1 <= len(first.heads) <= loaded.n_layers * loaded.n_heads


def test_calibration_cache_is_keyed_on_the_weights(tiny_model_dir, tmp_path, monkeypatch) -> None:
    """Different weights under the same folder name never reuse stale heads."""
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    folder = tiny_model_dir("llama")
    first = load_model(str(folder))
    second = load_model(str(folder))
    assert first.fingerprint == second.fingerprint
    with torch.no_grad():
        second.model.model.layers[0].self_attn.q_proj.weight.mul_(-1.0)
    second.__dict__.pop("fingerprint", None)
    assert second.fingerprint != first.fingerprint
    calibration(first)
    calibration(second)
    assert len(list((tmp_path / "calibration").glob("*.json"))) == 2


def eager_shares(loaded: LoadedModel, eager: torch.nn.Module, case: Case) -> np.ndarray:
    """[layers, heads, passages] mean over answer tokens of each head's passage shares, from the ``eager``
    twin's ``output_attentions`` (the weight of the rows predicting answer tokens on each passage's
    tokens, as shares of their total over passages)."""
    prompt = build_prompt(loaded, case.question, case.passages)
    answer = loaded.tokenizer(case.answer_contains, add_special_tokens=False)["input_ids"]
    ids = torch.as_tensor([*prompt.ids, *answer])[None]
    with torch.no_grad():
        weights = torch.stack(eager(ids, output_attentions=True).attentions, 1)[0].numpy()
    rows = weights[:, :, len(prompt.ids) - 1 : -1]  # [layers, heads, answer, keys]
    mass = np.stack([rows[..., start:end].sum(-1) for start, end in prompt.spans], axis=-1)
    return (mass / mass.sum(-1, keepdims=True)).mean(axis=2)


def test_held_out_accuracy_is_measured_on_cases_not_used_to_choose(tiny, tmp_path, monkeypatch) -> None:
    """Head accuracy, the chosen set and both accuracies against a reference built from eager weights."""
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    loaded = tiny("llama")
    steps: list[tuple[float, str]] = []
    result = calibrate(loaded, n_cases=8, seed=5, progress=lambda done, what: steps.append((done, what)))
    cases = synthetic_cases(8, seed=5)
    choose, held_out = split_cases(cases)
    assert result.n_choose == len(choose) == 4 and result.n_held_out == len(held_out) == 4
    assert not {c.question for c in choose} & {c.question for c in held_out}
    eager = type(loaded.model).from_pretrained(loaded.model.name_or_path, attn_implementation="eager").eval()
    shares = {c.question: eager_shares(loaded, eager, c) for c in cases}

    def accuracy(heads: Sequence[tuple[int, int]], among: list[Case]) -> float:
        """How often the heads' mean shares put the gold passage first."""
        rows, cols = zip(*heads, strict=True)
        return float(np.mean([shares[c.question][rows, cols].mean(0).argmax() == c.gold for c in among]))

    # The rule as documented: heads ranked by hits on the choosing cases (then by gold share), and the
    # head count whose set is most accurate on them (the larger count on ties).
    hits = np.mean([shares[c.question].argmax(-1) == c.gold for c in choose], axis=0)
    margin = np.mean([shares[c.question][..., c.gold] for c in choose], axis=0)
    order = sorted(np.ndindex(hits.shape), key=lambda head: (-hits[head], -margin[head]))
    best = max((k for k in HEAD_COUNTS if k <= hits.size), key=lambda k: (accuracy(order[:k], choose), k))
    np.testing.assert_array_equal(result.head_accuracy, hits)
    assert result.heads == tuple(order[:best])
    assert result.choice_accuracy == accuracy(result.heads, choose)
    assert result.held_out_accuracy == accuracy(result.heads, held_out)
    assert [round(done, 3) for done, _ in steps] == [round(i / 8, 3) for i in range(1, 9)]
    assert "case 8 of 8" in steps[-1][1]
    assert f"on {result.n_held_out} other cases" in result.describe()
    assert result.export()["held_out_cases"] == 4
