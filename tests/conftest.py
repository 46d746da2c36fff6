"""Shared fixtures: real built-in models and tiny random models saved and reloaded
through ``from_pretrained`` (never mocks), loaded once per test session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import attnviz
from attnviz.loading import LoadedModel, load_model

torch.set_num_threads(2)
torch.manual_seed(0)


@pytest.fixture(scope="session")
def smollm2() -> LoadedModel:
    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def minilm() -> LoadedModel:
    return load_model("minilm-l6")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Build a tiny random model of a family, save it with safetensors, return its folder."""
    from tests.tiny_models import save_tiny

    made: dict[str, Path] = {}

    def make(family: str) -> Path:
        if family not in made:
            made[family] = save_tiny(family, tmp_path_factory.mktemp(f"tiny-{family}"))
        return made[family]

    return make


@pytest.fixture(scope="session")
def tiny(tiny_model_dir: Callable[[str], Path]) -> Callable[[str], LoadedModel]:
    """Load a tiny family model through attnviz.load_model (the real from_pretrained path)."""
    loaded: dict[str, LoadedModel] = {}

    def get(family: str) -> LoadedModel:
        if family not in loaded:
            loaded[family] = attnviz.load_model(str(tiny_model_dir(family)))
        return loaded[family]

    return get
