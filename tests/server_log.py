"""The Streamlit server's log, read by the browser tests: pages hide tracebacks from the browser
(``showErrorDetails = "none"``), so an exception shows only in the server's output."""

from __future__ import annotations

import re
from pathlib import Path

PROBLEM = re.compile(r"traceback|exception", re.IGNORECASE)
COLOUR = re.compile(r"\x1b\[[0-9;]*m")  # Streamlit prints tracebacks through rich, in colour


def log_size(log: Path) -> int:
    """Bytes written to ``log`` so far (where a test's own part of a shared server's log starts)."""
    return log.stat().st_size if log.exists() else 0


def assert_no_exceptions_logged(log: Path, start: int = 0) -> None:
    """Fail with the log's text when, from byte ``start`` on, a line mentions a traceback or an exception."""
    with log.open("rb") as handle:
        handle.seek(start)
        text = COLOUR.sub("", handle.read().decode(errors="replace"))
    problems = [line for line in text.splitlines() if PROBLEM.search(line)]
    assert not problems, "the server logged an exception:\n" + text[-6000:]
