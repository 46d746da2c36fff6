"""Loader: built-in cache, safety refusals, offline misses."""

from __future__ import annotations

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers as tf
from safetensors.torch import load_file

import attnviz
from attnviz.models.loading import ModelLoadError, builtin_folder, builtin_models


def test_builtins_are_installed() -> None:
    assert builtin_models() == {"smollm2-135m-instruct": True, "minilm-l6": True}


@pytest.mark.slow
def test_gguf_conversion_is_cached(smollm2, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first use converts the GGUF into an empty cache, equal to the folder the session's model was loaded
    from (so that model's checks cover this conversion); a second use finds it without converting.

    Equal means the same tensors and byte-identical other files: safetensors' header order varies between runs."""
    loaded_from = Path(smollm2.model.name_or_path)
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    first: list[str] = []
    folder = builtin_folder("smollm2-135m-instruct", progress=first.append)
    assert any("De-quantizing" in m for m in first)
    assert folder.parent.parent == tmp_path and folder.name == loaded_from.name
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    second: list[str] = []
    assert builtin_folder("smollm2-135m-instruct", progress=second.append) == folder and second == []
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp
    assert not list(tmp_path.rglob(".partial-*"))
    names = sorted(p.name for p in folder.iterdir())
    assert "model.safetensors" in names and names == sorted(p.name for p in loaded_from.iterdir())
    converted, cached = load_file(folder / "model.safetensors"), load_file(loaded_from / "model.safetensors")
    assert converted.keys() == cached.keys() and all(torch.equal(converted[k], cached[k]) for k in cached)
    others = [name for name in names if name != "model.safetensors"]
    assert all(filecmp.cmp(folder / name, loaded_from / name, shallow=False) for name in others)
    assert smollm2.info.n_layers == 30 and smollm2.info.n_heads == 9 and smollm2.info.n_kv_heads == 3


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
