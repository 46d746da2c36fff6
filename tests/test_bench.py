"""Smoke test: the benchmark runs end to end and its rows are consistent (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.quality import format_quality
from benchmarks.run import Row, format_table


@pytest.mark.slow
def test_quick_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--skip", "browser", "--out", str(out)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = [Row(**row) for row in report["rows"]]
    assert {r.case for r in rows} == {"trace_full", "trace_layer", "attribution_attention", "model_load_cached"}
    for row in rows:
        assert row.ours > 0 and row.baseline > 0
        assert row.ratio == pytest.approx(row.ours / row.baseline, rel=1e-2)
    assert "| trace_full | 32 |" in result.stdout and format_table(rows) in result.stdout
    assert "cores" in report["machine"]
    quality = report["attribution_quality"]
    assert quality["cases"] == 2 and 0 <= quality["answered_correctly"] <= 2
    assert format_quality(quality) in result.stdout
