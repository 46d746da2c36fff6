"""The shared server's trace queue: batched traces equal single ones, errors stay with their request."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from concurrent.futures import Future

import numpy as np
import pytest

import attnviz
from attnviz.tracing.batching import Request, TraceQueue, Turns
from attnviz.tracing.inputs import PromptError

PROMPTS = [
    "The cat sat on the mat.",
    "A much longer prompt, about dogs that run in the park every day.",
    "Hi",
]


def assert_batched(queue: TraceQueue, n_requests: int) -> None:
    """Every request was traced once, and at least one forward pass held more than one of them."""
    passes = queue.passes_by_size()
    assert sum(size * count for size, count in passes.items()) == n_requests, passes
    assert max(passes) > 1, passes


@pytest.mark.parametrize("family", ["llama", "bert", "t5"])
def test_concurrent_requests_get_their_own_exact_trace(tiny, family: str) -> None:
    """Requests that wait together share one padded forward pass; each gets exactly its unbatched trace."""
    loaded = tiny(family)
    target = "une phrase" if family == "t5" else None
    queue = TraceQueue(loaded)
    with loaded.lock:  # hold the model so every request waits and they are batched together
        futures = [queue.submit(Request(p, target=target)) for p in PROMPTS]
        ahead = [queue.ahead_of(f) for f in futures]
        # In arrival order: nothing is ever ahead of the first, and at most the requests that came before it
        # are ahead of each later one. (Each count is read at its own moment: the worker may take requests
        # into a pass between two reads, so the list itself need not be sorted.)
        assert all(n <= i for i, n in enumerate(ahead)), ahead
    for prompt, future in zip(PROMPTS, futures, strict=True):
        alone = attnviz.trace(loaded, prompt, target=target)
        got = future.result(timeout=120)
        assert got.tokens == alone.tokens
        np.testing.assert_allclose(got.attention, alone.attention, atol=1e-5)
        if family == "t5":
            np.testing.assert_allclose(got.cross_attention, alone.cross_attention, atol=1e-5)
    assert_batched(queue, len(PROMPTS))


def test_a_bad_request_fails_alone(tiny) -> None:
    """An empty or too long prompt in a batch gets its own error; the others still get their traces."""
    loaded = tiny("llama")
    queue = TraceQueue(loaded)
    with loaded.lock:
        good = queue.submit(Request("a good prompt"))
        empty = queue.submit(Request("   "))
        long = queue.submit(Request("word " * 50, max_tokens=8))
        blank_chat = queue.submit(Request(None, ((("role", "user"), ("content", " \n")),)))
    assert good.result(timeout=120).n_tokens > 0
    with pytest.raises(PromptError, match="empty"):
        empty.result(timeout=120)
    with pytest.raises(PromptError, match="at most 8"):
        long.result(timeout=120)
    with pytest.raises(PromptError, match="chat"):
        blank_chat.result(timeout=120)


def test_many_threads_each_get_their_prompt(smollm2) -> None:
    """Twelve threads tracing different prompts at once on the real built-in model (GQA, right padding)."""
    queue = TraceQueue(smollm2)
    prompts = [f"Student {i} asks about number {i * 7}." for i in range(12)]
    futures: dict[int, Future] = {}
    results: dict[int, object] = {}

    def ask(i: int) -> None:
        futures[i] = queue.submit(Request(prompts[i]))
        results[i] = futures[i].result(timeout=300)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    with smollm2.lock:  # the model is busy while all twelve arrive, as on a server in class
        for thread in threads:
            thread.start()
        while len(futures) < len(prompts):
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert_batched(queue, len(prompts))
    for i, prompt in enumerate(prompts):
        assert results[i].input_ids.tolist() == smollm2.tokenizer(prompt)["input_ids"]
        alone = attnviz.trace(smollm2, prompt)
        assert results[i].tokens == alone.tokens
        np.testing.assert_allclose(results[i].attention, alone.attention, atol=1e-5, err_msg=prompt)


def test_turns_run_one_job_at_a_time_in_arrival_order() -> None:
    turns = Turns()
    order: list[int] = []
    heard: dict[int, list[int]] = {}
    running = threading.Event()
    first_may_finish = threading.Event()

    def first() -> None:
        with turns.turn():
            running.set()
            first_may_finish.wait(10)
            order.append(0)

    def later(i: int) -> None:
        with turns.turn(lambda ahead: heard.setdefault(i, []).append(ahead), poll=0.01):
            order.append(i)

    threads = [threading.Thread(target=first)]
    threads[0].start()
    running.wait(10)
    for i in (1, 2):
        threads.append(threading.Thread(target=later, args=(i,)))
        threads[-1].start()
        while len(turns) < i + 1:  # each joins the line before the next arrives
            time.sleep(0.005)
    time.sleep(0.1)
    assert order == []  # nobody overtakes the running job
    first_may_finish.set()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2]
    assert heard[1][0] == 1 and heard[2][0] == 2  # each heard how many jobs were ahead of it
    assert len(turns) == 0


def test_a_caller_stopped_while_waiting_leaves_the_line() -> None:
    turns = Turns()

    class Stopped(Exception):
        pass

    def stop(ahead: int) -> None:
        raise Stopped

    with turns.turn():
        with pytest.raises(Stopped), turns.turn(stop, poll=0.01):
            pass
        assert len(turns) == 1  # only the running job is left
    assert len(turns) == 0


def test_an_idle_queue_holds_no_thread_and_frees_its_model(tiny_model_dir) -> None:
    """The worker exits once the queue is empty, so dropping the queue frees the model."""
    loaded = attnviz.load_model(str(tiny_model_dir("llama")))
    queue = TraceQueue(loaded)
    assert queue.submit(Request("The cat sat.")).result(timeout=120).n_tokens > 0
    name = f"attnviz-trace-{loaded.info.name}"
    workers = [t for t in threading.enumerate() if t.name == name]
    for worker in workers:
        worker.join(timeout=10)
    assert not any(worker.is_alive() for worker in workers)
    assert queue.submit(Request("It purred.")).result(timeout=120).n_tokens > 0  # a new worker starts
    model = weakref.ref(loaded.model)
    del queue, loaded
    for worker in [t for t in threading.enumerate() if t.name == name]:
        worker.join(timeout=10)
    gc.collect()
    assert model() is None
