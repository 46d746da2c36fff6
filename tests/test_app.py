"""The app starts and its landing page renders (AppTest, no browser)."""

import os
import subprocess
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

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
