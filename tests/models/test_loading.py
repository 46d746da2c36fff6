"""Loader: built-in cache, safety refusals, offline misses."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers as tf
from safetensors.torch import load_file

import attnviz
from attnviz.models.loading import ModelLoadError
from attnviz.models.registry import builtin_folder, builtin_models
from attnviz.models.safety import canonical_name


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


def test_pickle_checkpoint_is_refused_without_listing_files(tmp_path: Path) -> None:
    model = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50))
    model.config.save_pretrained(tmp_path)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # the classic pickle checkpoint
    with pytest.raises(ModelLoadError, match="pickle") as caught:
        attnviz.load_model(str(tmp_path))
    assert "pytorch_model.bin" not in str(caught.value) and "config.json" not in str(caught.value)


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
    message = refusal("nobody-here/no-such-model")
    assert "not a built-in name" in message and "ATTNVIZ_MODEL_DIRS" in message and "ATTNVIZ_ONLINE" in message


def refusal(name: str) -> str:
    """The message loading ``name`` is refused with, the name itself blanked out."""
    with pytest.raises(ModelLoadError) as caught:
        attnviz.load_model(name)
    return str(caught.value).replace(f"'{canonical_name(name)}'", "'NAME'")


def test_not_found_and_not_allowed_read_the_same(tmp_path: Path, model_dirs: Path) -> None:
    """Outside the roots, missing, not a model folder, ``..`` or a symlink out: one message, no path shown."""
    outside = tmp_path.parent.parent.parent  # above pytest's base folder: outside the allowed root
    (tmp_path / "empty").mkdir()
    (tmp_path / "escape").symlink_to("/etc")
    names = [
        "/etc", "~", "~/", "/no/such/folder", str(outside), str(tmp_path / "missing"), str(tmp_path / "empty"),
        f"{model_dirs}/../../../../../../etc", str(tmp_path / "escape"), "/" + "a" * 290,
    ]  # fmt: skip
    messages = {name: refusal(name) for name in names}
    assert len(set(messages.values())) == 1, messages
    (message,) = set(messages.values())
    assert "'NAME'" in message
    for leak in (str(Path.home()), str(outside), "config.json", "/etc/", "passwd"):
        assert leak not in message


def test_local_folders_need_an_allowed_root(tiny_model_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset ATTNVIZ_MODEL_DIRS means built-in models only; a listed root allows the folders inside it."""
    folder = tiny_model_dir("llama")
    monkeypatch.delenv("ATTNVIZ_MODEL_DIRS")
    assert "Unknown model" in refusal(str(folder))
    monkeypatch.setenv("ATTNVIZ_MODEL_DIRS", os.pathsep.join(["/nowhere", str(folder.parent.parent)]))
    assert attnviz.load_model(str(folder) + "/./").info.name == str(folder)
    monkeypatch.setenv("ATTNVIZ_MODEL_DIRS", str(folder / "sub"))  # a root below the folder allows only below
    assert "Unknown model" in refusal(str(folder))


def test_one_name_per_folder() -> None:
    assert {canonical_name(n) for n in ("/x", "/x/", "/x/./", "//x", "/y/../x", " /x ")} == {"/x"}
    assert canonical_name("./m/") == "./m" and canonical_name("~/m/.") == "~/m"
    assert canonical_name("org/model") == "org/model" and canonical_name("minilm-l6") == "minilm-l6"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the check as another user")
def test_unreadable_path_is_refused_not_raised(tmp_path: Path) -> None:
    """A path the server cannot read (here: under a folder only root may enter) gives the same message."""
    locked = tmp_path / "locked"
    (locked / "model").mkdir(parents=True)
    locked.chmod(0o700)
    script = (
        "import os, attnviz, attnviz.sources.attribution  # the library imported while its files are readable\n"
        "os.setgid(65534); os.setuid(65534)  # from here on the locked folder is unreadable\n"
        "try:\n    attnviz.load_model(os.environ['NAME'])\n"
        "except attnviz.ModelLoadError as e:\n    print('REFUSED', e)\n"
    )
    env = {**os.environ, "NAME": str(locked / "model"), "ATTNVIZ_MODEL_DIRS": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "HOME": "/nonexistent"}  # fmt: skip
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd="/",
                            timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("REFUSED Unknown model"), result.stdout


def test_models_command_lists_builtins() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "attnviz", "models"], capture_output=True, text=True, check=True, timeout=120
    )
    assert "smollm2-135m-instruct" in result.stdout and "minilm-l6" in result.stdout
    assert "available" in result.stdout
