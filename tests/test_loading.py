"""Loader: built-in cache, safety refusals, offline misses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers as tf

import attnviz
from attnviz.models.loading import ModelLoadError
from attnviz.models.registry import builtin_models


def test_builtins_are_installed() -> None:
    assert builtin_models() == {"smollm2-135m-instruct": True, "minilm-l6": True}


@pytest.mark.slow
def test_gguf_conversion_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    first: list[str] = []
    model = attnviz.load_model("smollm2-135m-instruct", progress=first.append)
    assert any("De-quantizing" in m for m in first)
    (weights,) = tmp_path.rglob("model.safetensors")
    stamp = weights.stat().st_mtime_ns
    second: list[str] = []
    again = attnviz.load_model("smollm2-135m-instruct", progress=second.append)
    assert not any("De-quantizing" in m for m in second)
    assert weights.stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob(".partial-*"))
    ids = model.tokenizer("Hello", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(model.model(ids).logits, again.model(ids).logits)
    assert model.info.n_layers == 30 and model.info.n_heads == 9 and model.info.n_kv_heads == 3


def test_pickle_checkpoint_is_refused(tmp_path: Path) -> None:
    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # the classic pickle checkpoint
    with pytest.raises(ModelLoadError, match="pickle"):
        attnviz.load_model(str(tmp_path))


def test_remote_code_is_refused(tiny_model_dir, tmp_path: Path) -> None:
    source = tiny_model_dir("llama")
    for item in source.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    config = json.loads((tmp_path / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilModel"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        attnviz.load_model(str(tmp_path))


def test_offline_miss_names_what_was_tried() -> None:
    with pytest.raises(ModelLoadError) as caught:
        attnviz.load_model("nobody-here/no-such-model")
    message = str(caught.value)
    assert "not a built-in name" in message and "not a local folder" in message and "ATTNVIZ_ONLINE" in message


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        attnviz.load_model(str(tmp_path))


def test_models_command_lists_builtins() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "attnviz", "models"], capture_output=True, text=True, check=True, timeout=120
    )
    assert "smollm2-135m-instruct" in result.stdout and "minilm-l6" in result.stdout
    assert "available" in result.stdout
