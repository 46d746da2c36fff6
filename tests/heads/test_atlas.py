"""Head atlas: statistics reduced during the pass equal those of full traces; roles, ablation checks, cache, CLI."""

from __future__ import annotations

import copy
import json
import re
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz import cli, hooks
from attnviz.heads import roles as roles_module
from attnviz.heads import stats
from attnviz.heads.atlas import (
    DEFAULT_PROMPTS,
    STATISTICS,
    AtlasCancelled,
    atlas,
    batch_statistics,
    build_atlas,
)
from attnviz.heads.corpus import (
    SHIPPED,
    CorpusError,
    CorpusPrompt,
    corpus_prompts,
    generated_counts,
    parse_corpus,
    shipped_corpus,
    token_matches,
)
from attnviz.heads.roles import ROLES, assign_roles, check_roles
from attnviz.tracing.trace import record

TEXTS = (
    "The cat sat on the mat, and then the cat sat on the mat again because the mat was warm.",
    "Rain fell on the hills all night; by morning the river had risen over the old stone bridge.",
)
CORPUS = parse_corpus("two.txt", "\n\n".join(TEXTS))


def full_statistics(loaded, prompt: CorpusPrompt) -> np.ndarray:  # noqa: ANN001 - LoadedModel
    """[layers, heads, S] from the full recorded maps, computed independently in numpy."""
    ids = torch.tensor([prompt.ids])
    _, recording = record(loaded, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    maps = recording.weights[loaded.main_stack][0].astype(np.float64)  # [layers, heads, n, n]
    n = maps.shape[-1]
    base = stats.head_stats(maps, tuple(range(maps.shape[0])), tuple(range(maps.shape[1])))
    visible = np.arange(1, n + 1) if loaded.kind == "decoder" else np.full(n, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = -np.where(maps > 0, maps * np.log2(maps), 0.0).sum(-1)  # [layers, heads, n]
    usable = visible > 1
    breadth = (rows[..., usable] / np.log2(visible[usable])).mean(-1)
    duplicate, induction = token_matches(prompt.ids)

    def matched(mask: np.ndarray) -> np.ndarray:
        return (maps * mask).sum(-1)[..., mask.any(-1)].mean(-1)

    columns = {
        "entropy": base.entropy, "distance": base.distance, "first_token": base.first_token,
        "previous_token": base.previous_token, "breadth": breadth,
        "induction": matched(induction), "duplicate": matched(duplicate),
    }  # fmt: skip
    return np.stack([columns[name] for name in STATISTICS], axis=-1)


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_statistics_equal_full_traces_on_every_kind_of_prompt(tiny, family: str) -> None:
    """Causal GQA decoder and bidirectional encoder; natural, repeated and duplicated-token prompts."""
    loaded = tiny(family)
    prompts = corpus_prompts(loaded, CORPUS, 1, max_tokens=40)
    generated = [p for p in prompts if p.kind != "natural"]  # repeated and duplicated, all of one length: one pass
    assert {p.kind for p in generated} == {"repeated", "duplicate"} and len({len(p.ids) for p in generated}) == 1
    for batch in ([prompts[0]], generated):
        for prompt, found in zip(batch, batch_statistics(loaded, batch), strict=True):
            np.testing.assert_allclose(found, full_statistics(loaded, prompt), rtol=1e-4, atol=1e-5)


def test_induction_on_repeated_tokens_is_the_usual_induction_score(tiny) -> None:
    loaded = tiny("llama")
    prompt = next(p for p in corpus_prompts(loaded, CORPUS, 1, max_tokens=40) if p.kind == "repeated")
    ids = torch.tensor([prompt.ids])
    _, recording = record(loaded, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    usual = stats.induction_score(recording.weights["decoder"][0], prompt.period, prompt.start)
    np.testing.assert_allclose(batch_statistics(loaded, [prompt])[0, ..., list(STATISTICS).index("induction")], usual,
                               rtol=1e-4, atol=1e-6)  # fmt: skip


def test_smollm2_statistics_equal_its_full_trace(smollm2) -> None:
    prompt = corpus_prompts(smollm2, CORPUS, 1, max_tokens=24)[0]
    np.testing.assert_allclose(batch_statistics(smollm2, [prompt])[0], full_statistics(smollm2, prompt), rtol=1e-3,
                               atol=1e-4)  # fmt: skip


def test_generated_sequences_hold_the_matches_they_promise(tiny) -> None:
    prompts = corpus_prompts(tiny("llama"), CORPUS, 2, max_tokens=40)
    repeated = next(p for p in prompts if p.kind == "repeated")
    block = repeated.ids[repeated.start : repeated.start + repeated.period]
    assert len(set(block)) == len(block) and repeated.ids[repeated.start + repeated.period :] == block
    duplicate = next(p for p in prompts if p.kind == "duplicate")
    dup_mask, _ = token_matches(duplicate.ids)
    assert 4 <= dup_mask.any(-1).sum() <= 20  # about 30% of 38 positions repeat an earlier token


def test_roles_follow_the_stated_thresholds() -> None:
    names = tuple(STATISTICS)
    mean = np.zeros((2, 3, len(names)))
    mean[..., names.index("distance")] = 10.0
    mean[1, 2, names.index("previous_token")] = 0.9
    mean[0, 1, names.index("previous_token")] = 0.5
    mean[0, 0, names.index("previous_token")] = 0.39  # just under 0.4
    mean[1, 0, names.index("distance")] = 2.0
    roles = assign_roles(mean, names, retrieval=((1, 1), (5, 0)))
    assert roles["previous-token"] == ((1, 2), (0, 1))  # strongest first
    assert roles["local"] == ((1, 0),)
    assert roles["retrieval"] == ((1, 1),)  # heads outside the model are dropped
    assert roles["induction"] == () and {r.name for r in ROLES} == set(roles)


def planted(loaded):  # noqa: ANN001, ANN201 - LoadedModel in and out
    """A copy of the tiny GPT-2 where layer-0 head 0 alone pushes every prediction to token 0, and every
    other head of both layers is silent (their outputs are multiplied by zero weights)."""
    model = copy.deepcopy(loaded.model)
    width, head_dim = model.config.n_embd, model.config.n_embd // model.config.n_head
    with torch.no_grad():
        wte = model.transformer.wte.weight  # tied to the LM head: a long row 0 makes token 0 win when aligned
        wte[0] *= 50.0
        first = model.transformer.h[0].attn
        value = slice(2 * width, 2 * width + head_dim)  # head 0's value columns of the fused q|k|v projection
        first.c_attn.weight[:, value] = 0.0
        first.c_attn.bias[value] = 0.0
        first.c_attn.bias[2 * width] = 1.0  # head 0's value is the same unit vector at every key
        first.c_proj.weight.zero_()
        first.c_proj.weight[0] = 100.0 * wte[0] / wte[0].norm()
        model.transformer.h[1].attn.c_proj.weight.zero_()
    hooks.attach(model, encoder_only=False)
    return replace(loaded, model=model)


def test_ablation_finds_a_planted_effect_and_reports_none_where_there_is_none(tiny) -> None:
    loaded = planted(tiny("gpt2"))
    prompts = corpus_prompts(loaded, CORPUS, 2, max_tokens=40)
    roles = {"induction": ((0, 0),), "local": ((1, 2),)}
    checks = check_roles(loaded, roles, prompts, None, lambda done, what: None)
    induction = checks["induction"]
    assert induction.heads == ((0, 0),) and len(induction.metrics) == 2
    for metric in induction.metrics:
        assert metric.control == pytest.approx(metric.baseline, abs=1e-5)  # silent control heads change nothing
        assert metric.ablated < metric.baseline - 1.0 and metric.measurable and metric.effect_high < 0
    local = checks["local"].metrics[0]
    assert local.ablated == pytest.approx(local.baseline, abs=1e-5) and not local.measurable
    assert checks["previous-token"] is None  # no heads, no check


def test_batched_ablation_checks_equal_one_case_per_pass(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """Intact, ablated and control runs of every role batched together give each metric of one run per pass."""
    loaded = tiny("llama")
    prompts = corpus_prompts(loaded, CORPUS, 2, max_tokens=40)
    roles = {"previous-token": ((1, 0), (0, 2)), "local": ((0, 1),), "first-token sink": ((1, 3),)}
    batched = check_roles(loaded, roles, prompts, None, lambda done, what: None)
    monkeypatch.setattr(roles_module, "PASS_TOKENS", 1)  # one row per pass
    alone = check_roles(loaded, roles, prompts, None, lambda done, what: None)
    assert batched.keys() == alone.keys() and batched["induction"] is None
    for name, check in batched.items():
        if check is None:
            continue
        assert check.heads == alone[name].heads and len(check.metrics) == len(alone[name].metrics) > 0
        for ours, reference in zip(check.metrics, alone[name].metrics, strict=True):
            assert ours.metric == reference.metric and ours.cases == reference.cases
            for field in ("baseline", "ablated", "control", "effect_low", "effect_high"):
                assert getattr(ours, field) == pytest.approx(getattr(reference, field), rel=1e-5, abs=1e-5)


def test_atlas_is_cached_and_cancellable(tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    loaded = tiny("gpt2")
    seen: list[float] = []
    first = atlas(loaded, CORPUS, prompts=2, progress=lambda done, what: seen.append(done))
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    again = atlas(loaded, CORPUS, prompts=2, progress=lambda done, what: pytest.fail("recomputed"))
    np.testing.assert_array_equal(again.values, first.values)
    assert again.roles == first.roles and again.checks == first.checks and again.prompts == first.prompts
    assert len(list((tmp_path / "atlas").iterdir())) == 1  # no partial file left behind
    stop = threading.Event()
    stop.set()
    with pytest.raises(AtlasCancelled):
        build_atlas(loaded, CORPUS, prompts=2, cancel=stop)


def test_statistics_are_means_with_intervals_over_their_own_prompts(tiny) -> None:
    result = build_atlas(tiny("gpt2"), CORPUS, prompts=2)
    kinds = np.array([p.kind for p in result.prompts])
    induction = list(STATISTICS).index("induction")
    assert np.isnan(result.values[kinds == "natural", ..., induction]).all()
    np.testing.assert_allclose(result.mean[..., induction], result.values[kinds == "repeated", ..., induction].mean(0))
    assert (result.low <= result.mean + 1e-12).all() and (result.mean <= result.high + 1e-12).all()


def test_corpus_files_parse_and_bad_ones_say_why(tmp_path: Path) -> None:
    assert parse_corpus("a.txt", "one\n\n\n two  lines\nhere \n\n").texts == ("one", "two lines here")
    assert parse_corpus("a.jsonl", '{"text": "x y"}\n\n{"text": "z"}\n').texts == ("x y", "z")
    with pytest.raises(CorpusError, match="line 2"):
        parse_corpus("a.jsonl", '{"text": "x"}\n{"txt": 1}\n')
    with pytest.raises(CorpusError, match="no passage"):
        parse_corpus("a.txt", "\n\n  \n")
    shipped = shipped_corpus()
    assert len(shipped.texts) >= DEFAULT_PROMPTS and len(set(shipped.texts)) == len(shipped.texts)


def test_the_shipped_corpus_states_sources_and_fills_the_default_atlas(tiny) -> None:
    rows = [json.loads(line) for line in SHIPPED.read_text(encoding="utf-8").splitlines()]
    assert all(set(row) == {"genre", "text", "source"} and all(row.values()) for row in rows)
    genres = {row["genre"] for row in rows}
    assert len(genres) >= 20 and {row["genre"] for row in rows[: len(genres)]} == genres  # interleaved
    public = [row["source"] for row in rows if row["source"] != "written for attnviz"]
    assert public and all(re.search(r"\(1[5-9]\d\d\)", source) for source in public)  # author, work (year)
    prompts = corpus_prompts(tiny("llama"), shipped_corpus(), DEFAULT_PROMPTS)  # SmolLM2's tokenizer
    natural = [p for p in prompts if p.kind == "natural"]
    assert len(natural) == DEFAULT_PROMPTS
    assert len(prompts) == DEFAULT_PROMPTS + 2 * generated_counts(DEFAULT_PROMPTS)
    assert np.mean([len(p.ids) for p in natural]) >= 90


def test_cli_writes_the_documented_json(tiny_model_dir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "mine.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": t}) for t in TEXTS))
    out = tmp_path / "atlas.json"
    model = str(tiny_model_dir("llama"))
    assert cli.main(["atlas", "--model", model, "--corpus", str(corpus), "--prompts", "2", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"model", "fingerprint", "corpus", "statistics", "heads", "roles"}
    assert data["corpus"]["name"] == "mine.jsonl" and data["corpus"]["prompts"] == 2 + 4 + 4
    assert data["statistics"] == list(STATISTICS) and len(data["heads"]) == 2 * 4
    assert set(data["heads"][0]) == {"layer", "head", "roles", "mean", "low", "high"}
    assert set(data["heads"][0]["mean"]) == set(STATISTICS)
    assert set(data["roles"]) == {role.name for role in ROLES}
    for entry in data["roles"].values():
        assert set(entry) == {"heads", "metric", "baseline", "ablated", "control", "effect_low", "effect_high"}
    assert cli.main(["atlas", "--model", model, "--corpus", str(tmp_path / "none.txt"), "--out", str(out)]) == 2
