"""The server's shared results: reused by every session, least recently used evicted past the bound."""

from __future__ import annotations

import time

from ui.cache import Prompt, SharedResults, TraceStore


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


def _settled(store: TraceStore, count: int) -> None:
    """Wait until ``count`` traces are stored (each is stored by a callback right after its result is set)."""
    for _ in range(200):
        if len(store) == count:
            return
        time.sleep(0.01)


def test_trace_store_keeps_the_most_recent_traces_within_its_byte_budget(tiny_model_dir) -> None:
    prompts = [Prompt(str(tiny_model_dir("llama")), text) for text in ("one two", "three four five six", "seven")]
    sizes = [sum(a.nbytes for a in (t.attention, t.thumbnails) if a is not None)
             for t in (TraceStore(10**9).future(p).result() for p in prompts)]  # fmt: skip
    store = TraceStore(budget=sizes[1] + sizes[2])  # the last two fit, all three do not
    for count, prompt in enumerate(prompts, start=1):
        store.future(prompt).result()
        _settled(store, min(count, 2))
    assert len(store) == 2
    assert prompts[0] not in store._done  # the least recently used was evicted
    assert store.future(prompts[2]).done() and store.future(prompts[1]).done()  # served from the store
    too_small = TraceStore(budget=min(sizes) - 1)
    too_small.future(prompts[0]).result()
    _settled(too_small, 1)
    assert len(too_small) == 0  # a trace larger than the whole budget is served, not kept
