"""benchmarks/gpu.py's CPU-safe parts: arguments, rows written as they finish, the word tokenizer, and the
tiny-family equality with eager run on the CPU (the GPU rows need a GPU; see the README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import gpu


def test_arguments() -> None:
    args = gpu.parse_args(["--out", "r.json"])
    assert (args.out, args.device, args.budget_s, args.quick) == (Path("r.json"), None, 480.0, False)
    with pytest.raises(SystemExit):
        gpu.parse_args([])  # --out is required


def test_word_tokenizer_gives_exact_lengths() -> None:
    tokenizer = gpu.word_tokenizer()
    for n in (1, 17, 5000):
        assert len(tokenizer(gpu.words(n))["input_ids"]) == n
    assert tokenizer.convert_ids_to_tokens(tokenizer("w5 w6")["input_ids"]) == ["w5", "w6"]


def test_each_row_is_on_disk_before_the_next_starts(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    on_disk: list[list[str]] = []

    def reads_the_report() -> dict[str, object]:
        on_disk.append([row["name"] for row in json.loads(out.read_text())["rows"]])
        return {"ok": True}

    def fails() -> dict[str, object]:
        raise RuntimeError("CUDA out of memory")

    rows = [("first", lambda: {"ok": True, "value": 1}), ("fails", fails), ("second", reads_the_report)]
    report = gpu.run(rows, out, budget_s=60, header={"device": "cpu"})
    assert on_disk == [["first", "fails"]]
    written = json.loads(out.read_text())
    assert written == report and written["device"] == "cpu" and written["all_ok"] is False
    assert written["rows"][1] == {"name": "fails", "ok": False, "error": "RuntimeError: CUDA out of memory",
                                  "seconds": written["rows"][1]["seconds"]}  # fmt: skip
    assert [row["ok"] for row in written["rows"]] == [True, False, True]


def test_rows_past_the_budget_are_listed_as_skipped(tmp_path: Path) -> None:
    ran: list[str] = []
    report = gpu.run([("late", lambda: ran.append("late") or {"ok": True})], tmp_path / "r.json", 0.0, {})
    assert ran == [] and report["rows"][0]["skipped"].startswith("time budget") and not report["all_ok"]


def test_quick_run_on_the_cpu_finds_traces_equal_to_eager(tmp_path: Path) -> None:
    out = tmp_path / "cpu.json"
    assert gpu.main(["--out", str(out), "--device", "cpu", "--quick"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [row["name"] for row in rows] == [f"equality/{family}" for family in gpu.EQUALITY_FAMILIES[:3]]
    for row in rows:
        assert row["ok"] and row["weights_max_abs_diff"] == 0.0 and row["logits_max_abs_diff"] == 0.0, row


def test_encoder_equality_compares_last_hidden_states(tmp_path: Path) -> None:
    row = gpu.equality("bert", "cpu", tmp_path)
    assert row["ok"] and row["weights_max_abs_diff"] == 0.0 and row["last_hidden_state_max_abs_diff"] == 0.0
