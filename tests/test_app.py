"""The app starts and its landing page renders (AppTest, no browser)."""

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from benchmarks.browser import streamlit_server

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def test_app_starts_on_home() -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "attnviz"
    table = at.dataframe[0].value
    assert set(table["model"]) == {"smollm2-135m-instruct", "minilm-l6"}


def test_openmp_spin_is_set_before_torch_loads_and_a_users_setting_wins() -> None:
    """app.py imports streamlit, then ``ui``: the spin count must be in the environment before torch loads libgomp."""
    check = "import os, sys, streamlit, ui; print('torch' in sys.modules, os.environ['GOMP_SPINCOUNT'])"
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    run = lambda extra: subprocess.run(  # noqa: E731
        [sys.executable, "-c", check], cwd=ROOT, env=env | extra, capture_output=True, text=True, check=True
    ).stdout.split()
    assert run({}) == ["False", "30000"]
    assert run({"GOMP_SPINCOUNT": "0"}) == ["False", "0"]


def test_serving_app_py_builds_an_st_app_without_waiting_for_torch() -> None:
    """``streamlit run`` imports app.py to find its ``st.App``: that import must not load torch (the
    preload thread does, while the server already accepts connections)."""
    check = "import sys, app, streamlit as st; print(type(app.app) is st.App, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


@pytest.mark.slow
def test_the_server_loads_its_models_before_any_page_asks(
    tiny_model_dir: Callable[[str], Path], tmp_path: Path
) -> None:
    """With no browser connected, ``streamlit run`` loads and warms up ATTNVIZ_PRELOAD's models; a bad name is logged."""
    folder = tiny_model_dir("llama")
    log = tmp_path / "server.log"
    preload = {"ATTNVIZ_PRELOAD": f"{folder}, no-such-model"}
    with streamlit_server(env=preload, log_path=log):
        deadline = time.monotonic() + 180
        while "Could not preload" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
    text = log.read_text()
    assert f"Preloaded {folder}" in text
    assert "no warm-up trace" not in text  # the tiny model was traced through the pages' path too
    assert "Could not preload no-such-model" in text


def test_the_served_app_runs_without_a_file_watcher() -> None:
    """``streamlit run app.py`` reads .streamlit/config.toml: no watcher, no "Inotify queue overflowed" flood."""
    check = "from streamlit import config; config.get_config_options(force_reparse=True); "
    check += "print(config.get_option('server.fileWatcherType'))"
    out = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"
