"""Open a page of the app under Streamlit's AppTest the way a user does: through app.py's navigation."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_page(name: str, timeout: float = 300, **query: str) -> AppTest:
    """Run app.py at ``pages/<name>.py`` with URL query parameters ``query``."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in query.items():
        at.query_params[key] = value
    return at.switch_page(f"pages/{name}.py").run()
