"""The app starts and its landing page renders (AppTest, no browser)."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def test_app_starts_on_home() -> None:
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert at.title[0].value == "attnviz"
    table = at.dataframe[0].value
    assert set(table["model"]) == {"smollm2-135m-instruct", "minilm-l6"}
