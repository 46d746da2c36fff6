"""The server's shared results: reused by every session, least recently used evicted past the bound."""

from __future__ import annotations

from ui.cache import SharedResults


def test_least_recently_used_result_is_evicted_first() -> None:
    shared = SharedResults(max_entries=2)
    shared.put("a", 1)
    shared.put("b", 2)
    assert shared.get("a") == 1  # "a" is now the most recently used
    shared.put("c", 3)
    assert shared.get("b") is None
    assert (shared.get("a"), shared.get("c")) == (1, 3)
    shared.clear()
    assert shared.get("a") is None and shared.get("c") is None
