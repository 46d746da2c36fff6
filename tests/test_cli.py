"""``python -m attnviz trace`` writes the arrays the issue specifies."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

import attnviz


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "attnviz", *args], capture_output=True, text=True, timeout=300)


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
