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
@pytest.mark.timeout(1800)  # nine model-loading subprocesses: minutes when the machine is shared
def test_quick_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--skip", "browser", "--out", str(out)],
        capture_output=True, text=True, timeout=1700,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = [Row(**row) for row in report["rows"]]
    per_size = {"trace_full", "trace_full_user", "trace_full_sdpa", "trace_full_memory", "trace_layer"}
    per_size |= {"first_view_pass", "open_head"}
    once = {"attribution_attention", "model_load_cached", "another_head", "first_view_bytes"}
    assert {r.case for r in rows} == per_size | once
    assert {r.tokens for r in rows if r.case in per_size} == {32}
    memory = next(r for r in rows if r.case == "trace_full_memory")
    assert memory.unit == "MB" and memory.ours == pytest.approx(memory.ours_peak_mb, abs=0.06) and memory.baseline > 0
    for row in rows:
        assert row.baseline > 0 and (row.ours > 0 or row is memory)  # 32 tokens' maps may fit in freed heap
        assert row.ratio == pytest.approx(row.ours / row.baseline, rel=1e-2)
    assert "| trace_full | 32 |" in result.stdout and format_table(rows) in result.stdout
    assert format_table(rows) in out.with_suffix(".md").read_text()
    assert "cores" in report["machine"]
    quality = report["attribution_quality"]
    assert quality["cases"] == 2 and 0 <= quality["answered_correctly"] <= 2
    assert format_quality(quality) in result.stdout
