"""The server's shared results: reused by every session, least recently used evicted past the bound."""

from __future__ import annotations

import threading
import time

from attnviz.heads.summary import Progress
from ui import cache
from ui.cache import FirstViewStore, Prompt, SharedResults, TraceStore


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


def test_first_view_store_keeps_the_most_recent_views_within_its_byte_budget(tiny_model_dir) -> None:
    prompts = [Prompt(str(tiny_model_dir("llama")), text) for text in ("one two", "three four five six", "seven")]
    sizes = [FirstViewStore(10**9).get(p).nbytes for p in prompts]
    assert all(size > 0 for size in sizes)
    store = FirstViewStore(budget=sizes[1] + sizes[2])  # the last two fit, all three do not
    views = [store.get(p) for p in prompts]
    assert len(store) == 2 and prompts[0] not in store._done  # the least recently used was evicted
    assert store.get(prompts[2]) is views[2] and store.get(prompts[1]) is views[1]  # served from the store
    too_small = FirstViewStore(budget=min(sizes) - 1)
    assert too_small.get(prompts[0]).summary.n_tokens > 0 and len(too_small) == 0  # served, not kept


def test_first_view_store_computes_a_view_once_for_sessions_asking_together(tiny_model_dir, monkeypatch) -> None:
    """The second session waits for the first one's pass and is told its progress meanwhile."""
    computed: list[Prompt] = []
    started, relayed, release = threading.Event(), threading.Event(), threading.Event()
    real = cache._first_view

    def slow_first_view(prompt: Prompt, progress: Progress, detail: tuple[int, int] | None) -> cache.FirstView:
        computed.append(prompt)
        progress(1, 99)  # as a pass tells each layer done
        started.set()
        release.wait(10)
        return real(prompt, progress, detail)

    monkeypatch.setattr(cache, "_first_view", slow_first_view)
    store, prompt = FirstViewStore(10**9), Prompt(str(tiny_model_dir("llama")), "one two three")
    results: list[cache.FirstView] = []
    told: dict[str, list[tuple[int, int]]] = {"first": [], "second": []}

    def ask(name: str) -> None:
        def progress(done: int, total: int) -> None:
            told[name].append((done, total))
            if name == "second":
                relayed.set()

        results.append(store.get(prompt, progress))

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    started.wait(10)
    second = threading.Thread(target=ask, args=("second",))
    second.start()
    assert relayed.wait(10)  # the waiting session got the pass's progress before the pass ended
    release.set()
    first.join(10)
    second.join(10)
    assert computed == [prompt] and len(results) == 2 and results[0] is results[1]
    layers = results[0].summary.layers
    assert told["first"] == [(1, 99)] + [(k, len(layers)) for k in range(1, len(layers) + 1)]
    assert told["second"][0] == (1, 99)
