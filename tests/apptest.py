"""Open a page of the app under Streamlit's AppTest the way a user does: through app.py's navigation."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_page(name: str, timeout: float = 300, **query: str) -> AppTest:
    """Run app.py at ``pages/<name>.py`` with URL query parameters ``query``."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    for key, value in query.items():
        at.query_params[key] = value
    return at.switch_page(f"pages/{name}.py").run()


def record_downloads(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Keep the bytes behind every download button the page draws, by media file id (AppTest serves none)."""
    files: dict[str, bytes] = {}
    store = MemoryMediaFileStorage.load_and_get_id

    def keep(self: MemoryMediaFileStorage, data: bytes | str, *args: object, **kwargs: object) -> str:
        file_id = store(self, data, *args, **kwargs)
        files[file_id] = self.get_file(file_id).content
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", keep)
    return files


def downloaded(at: AppTest, files: dict[str, bytes], label: str) -> bytes:
    """What the download button ``label`` of the last run serves."""
    button = next(b for b in at.get("download_button") if b.proto.label == label)
    return files[Path(button.proto.url).stem]
