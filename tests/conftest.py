"""Shared fixtures: real built-in models and tiny random models saved and reloaded
through ``from_pretrained`` (never mocks), loaded once per test session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

import attnviz
from attnviz.models.loading import LoadedModel, load_model

torch.set_num_threads(2)
torch.manual_seed(0)


@pytest.fixture(scope="session", autouse=True)
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The one root tests load local folders from: pytest's temporary folders (tiny models, refusals).

    Set for the whole session, before any server or subprocess starts, so they inherit it.
    """
    root = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ATTNVIZ_MODEL_DIRS", str(root))
        yield root


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


@pytest.fixture(scope="session")
def app_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One real Streamlit server for all browser tests: its URL and the file its output goes to."""
    from benchmarks.browser import streamlit_server

    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    with streamlit_server(env={"PYTHONUNBUFFERED": "1"}, log_path=log) as url:
        yield url, log


@pytest.fixture(scope="session")
def app_url(app_server: tuple[str, Path]) -> str:
    return app_server[0]


@pytest.fixture(scope="session")
def chromium() -> Iterator[object]:
    """Debian Chromium driven by Playwright (its own browser download does not work here)."""
    from playwright.sync_api import sync_playwright

    from benchmarks.browser import CHROMIUM_ARGS, chromium_path

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(chromium, app_server: tuple[str, Path]) -> Iterator[object]:
    """A fresh tab, 1400 px wide, with every non-localhost request blocked.

    The test fails if the server logged an exception meanwhile: the browser never shows tracebacks."""
    from benchmarks.browser import block_external
    from tests.server_log import assert_no_exceptions_logged, log_size

    log = app_server[1]
    start = log_size(log)
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    tab = context.new_page()
    tab.blocked_requests = block_external(tab)
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.dialogs = dialogs
    yield tab
    context.close()
    assert_no_exceptions_logged(log, start)


@pytest.fixture()
def replayed_heads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (layer, head) of every head ui.cache recomputes from its layer's kept input during the test."""
    from ui import cache

    replayed: list[tuple[int, int]] = []
    real = cache.trace_head

    def counted(loaded: LoadedModel, kept: object, layer: int, head: int) -> object:
        replayed.append((layer, head))
        return real(loaded, kept, layer, head)

    monkeypatch.setattr(cache, "trace_head", counted)
    return replayed
