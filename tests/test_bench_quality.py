"""Attribution quality evaluation (benchmarks.quality) on a tiny model with the disk-cached calibration."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.attribution import METHODS
from attnviz.calibration import Case, calibration
from benchmarks.quality import evaluate_rag

PASSAGES = ["The cat sleeps on the warm mat.", "Paris is the capital of France.", "Nine plus one is ten."]


def test_evaluate_rag_reuses_the_cached_calibration(tiny, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    loaded = tiny("llama")
    first = calibration(loaded)
    # "" is contained in any answer, so every case counts
    cases = [
        Case("Where is Paris?", tuple(PASSAGES), 1, ""),
        {"question": "What sleeps?", "passages": PASSAGES, "gold": 0, "answer_contains": ""},
    ]
    summary = evaluate_rag(loaded, cases)
    assert summary["cases"] == summary["answered_correctly"] == 2
    assert summary["calibration"]["heads"] == [list(h) for h in first.heads]
    for method in METHODS:
        hits = [row[f"top1_{method}"] == row["gold"] for row in summary["rows"]]
        assert summary[f"top1_{method}"] == pytest.approx(np.mean(hits))
    assert summary["seconds_ablation"] > 0 and summary["seconds_attention"] > 0