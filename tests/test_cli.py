"""``python -m attnviz trace`` writes the arrays the issue specifies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import attnviz
from attnviz import cli
from attnviz.models.loading import LoadedModel
from attnviz.sources.calibration import Calibration, calibration
from tests.cli import run_cli


def test_trace_writes_tokens_and_attention(tmp_path: Path, minilm) -> None:
    out = tmp_path / "t.npz"
    result = run_cli("trace", "--model", "minilm-l6", "--text", "Attention please", "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    expected = attnviz.trace(minilm, "Attention please")
    assert list(data["tokens"]) == list(expected.tokens)
    assert data["attention"].dtype == np.float32
    np.testing.assert_allclose(data["attention"], expected.attention, atol=1e-6)


def test_trace_encoder_decoder_writes_cross_attention(tmp_path: Path, tiny_model_dir) -> None:
    out = tmp_path / "t5.npz"
    folder = tiny_model_dir("t5")
    result = run_cli("trace", "--model", str(folder), "--text", "hello there", "--target", "salut", "--out", str(out))
    assert result.returncode == 0, result.stderr
    data = np.load(out)
    n, t = len(data["tokens"]), len(data["target_tokens"])
    assert data["attention"].shape == (2, 4, n, n)
    assert data["decoder_attention"].shape == (2, 4, t, t)
    assert data["cross_attention"].shape == (2, 4, t, n)


def test_trace_errors_are_readable(tmp_path: Path) -> None:
    result = run_cli("trace", "--model", "no-such-model", "--text", "x", "--out", str(tmp_path / "x.npz"))
    assert result.returncode == 2
    assert "error: Unknown model 'no-such-model'" in result.stderr


def test_prepare_is_idempotent_and_reports_progress(smollm2, minilm) -> None:
    """With the models already converted and calibrated (the set-up did it), prepare only loads them."""
    result = run_cli("prepare")
    assert result.returncode == 0, result.stderr
    for name in ("smollm2-135m-instruct", "minilm-l6"):
        assert f"[prepare] {name}: ready" in result.stderr
    assert "[prepare] smollm2-135m-instruct: " in result.stderr and " retrieval heads\n" in result.stderr


def test_only_prepare_recalibrate_chooses_the_heads_again(
    smollm2, minilm, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``prepare`` reuses the cached heads; ``prepare --recalibrate`` asks for them afresh (the heads
    themselves are read from the cache here: choosing them again takes minutes)."""
    asked: list[bool] = []

    def cached(loaded: LoadedModel, progress: object = None, refresh: bool = False) -> Calibration:
        asked.append(refresh)
        return calibration(loaded)

    monkeypatch.setattr(cli, "calibration", cached)
    assert cli.main(["prepare"]) == 0 and asked == [False]
    assert cli.main(["prepare", "--recalibrate"]) == 0 and asked == [False, True]
    assert "smollm2-135m-instruct: ready" in capsys.readouterr().err


def test_summary_from_a_text_file_equals_the_full_trace(tmp_path: Path, tiny_model_dir, tiny) -> None:
    from attnviz.heads.stats import head_stats
    from attnviz.tracing.thumbnails import thumbnail

    prompt = tmp_path / "prompt.txt"
    prompt.write_text("one two three four five six seven eight nine ten eleven twelve", encoding="utf-8")
    folder = tiny_model_dir("llama")
    out = tmp_path / "s.npz"
    result = run_cli("trace", "--model", str(folder), "--text-file", str(prompt), "--summary", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "running on cpu · float32" in result.stderr
    data = np.load(out)
    full = attnviz.trace(tiny("llama"), prompt.read_text(encoding="utf-8"))
    assert list(data["tokens"]) == list(full.tokens)
    np.testing.assert_allclose(data["thumbnails"], thumbnail(full.attention), atol=1e-5)
    names = list(data["head_stat_names"])
    expected = head_stats(full.attention, full.layers, full.heads)
    assert data["head_stats"].shape == (*full.attention.shape[:2], len(names))
    for index, name in enumerate(names):
        np.testing.assert_allclose(data["head_stats"][..., index], getattr(expected, name), rtol=1e-4, atol=1e-5)


def test_text_file_without_summary_writes_full_maps(tmp_path: Path, tiny_model_dir, tiny) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("hello there", encoding="utf-8")
    out = tmp_path / "t.npz"
    result = run_cli("trace", "--model", str(tiny_model_dir("llama")), "--text-file", str(prompt), "--out", str(out))
    assert result.returncode == 0, result.stderr
    np.testing.assert_allclose(np.load(out)["attention"], attnviz.trace(tiny("llama"), "hello there").attention, atol=1e-6)


def test_trace_in_bfloat16_says_so_and_matches_float32(tmp_path: Path, tiny, tiny_model_dir) -> None:
    out, text, folder = tmp_path / "bf16.npz", "one two three four five six", str(tiny_model_dir("llama"))
    result = run_cli("trace", "--model", folder, "--text", text, "--dtype", "bfloat16", "--out", str(out))
    assert result.returncode == 0 and "running on cpu · bfloat16" in result.stderr, result.stderr
    reference = attnviz.trace(tiny("llama"), text).attention
    traced = np.load(out)["attention"]
    assert not np.array_equal(traced, reference)
    np.testing.assert_allclose(traced, reference, atol=5e-3)
    wrong = run_cli("trace", "--model", folder, "--text", "x", "--dtype", "int8", "--out", "x.npz")
    assert wrong.returncode == 2 and "error: Unknown dtype 'int8': use auto, float32, bfloat16" in wrong.stderr


def test_missing_text_file_and_unknown_device_are_readable(tmp_path: Path, tiny_model_dir) -> None:
    folder = str(tiny_model_dir("llama"))
    missing = run_cli("trace", "--model", folder, "--text-file", str(tmp_path / "nope.txt"), "--out", "x.npz")
    assert missing.returncode == 2 and "error: Could not read the prompt" in missing.stderr
    device = run_cli("trace", "--model", folder, "--text", "x", "--device", "tpu", "--out", str(tmp_path / "x.npz"))
    assert device.returncode == 2 and "error: Unknown device 'tpu': use auto, cpu, cuda or cuda:N" in device.stderr
