"""Sharing one model among many sessions: a trace queue that batches, and turns for long jobs.

Many sessions tracing short prompts at once would otherwise queue one by one on the model's
lock; the queue's worker instead takes every waiting request (up to ``max_batch``, of similar
length) and traces them with :func:`attnviz.tracing.trace.trace_batch`. A request that fails inside a
batch is retried alone, so each caller gets its own result or its own error.

Long jobs (a Sources attribution: generation plus ablation passes, seconds of CPU each) take
:class:`Turns`, first come first served: run side by side they would all finish late, while
short traces still slip in between their forward passes.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass

from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import DEFAULT_MAX_TOKENS, Messages
from attnviz.tracing.trace import Trace, trace_batch

SHORT_CHARS = 2_000  # only prompts up to this long share a batch; longer ones run alone


@dataclass(frozen=True)
class Request:
    """One prompt to trace: ``text`` or chat ``messages``, plus decoder ``target`` text."""

    text: str | None
    messages: tuple[tuple[tuple[str, str], ...], ...] | None = None
    target: str | None = None
    max_tokens: int = DEFAULT_MAX_TOKENS
    float16: bool = False

    @property
    def prompt(self) -> str | Messages:
        return [dict(m) for m in self.messages] if self.messages is not None else (self.text or "")

    @property
    def chars(self) -> int:
        return len(self.text or "") + sum(len(v) for m in self.messages or () for _, v in m)


class TraceQueue:
    """Traces requests for one model in a background thread, batching those that wait together.

    The thread runs only while requests wait: it exits when the queue is empty and the next
    ``submit`` starts a new one. An idle queue therefore holds no thread, and a model dropped
    from the cache (with its queue) is freed, instead of being kept alive by a worker forever.
    """

    def __init__(self, loaded: LoadedModel, max_batch: int = 8) -> None:
        self.loaded = loaded
        self.max_batch = max_batch
        self._waiting: deque[tuple[Request, Future[Trace]]] = deque()
        self._running = 0
        self._passes: Counter[int] = Counter()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, request: Request) -> Future[Trace]:
        """Queue ``request``; the future holds its Trace or the error tracing it raised."""
        future: Future[Trace] = Future()
        with self._lock:
            self._waiting.append((request, future))
            if self._worker is None:
                name = f"attnviz-trace-{self.loaded.info.name}"
                self._worker = threading.Thread(target=self._work, name=name, daemon=True)
                self._worker.start()
        return future

    def ahead_of(self, future: Future[Trace]) -> int:
        """How many requests run or wait before ``future`` (0 once it is running or done)."""
        with self._lock:
            for index, (_, waiting) in enumerate(self._waiting):
                if waiting is future:
                    return self._running + index
        return 0

    def passes_by_size(self) -> dict[int, int]:
        """How many batched traces have started, by how many requests each held (did batches form?)."""
        with self._lock:
            return dict(self._passes)

    def _next_batch(self) -> list[tuple[Request, Future[Trace]]]:
        """The oldest request plus the waiting ones it can share a forward pass with."""
        first = self._waiting.popleft()
        batch = [first]
        # Right padding only: left padding shifts a causal model's positions, which would change results.
        tokenizer = self.loaded.tokenizer
        if first[0].chars <= SHORT_CHARS and tokenizer is not None and tokenizer.padding_side == "right":
            for item in list(self._waiting):
                if len(batch) >= self.max_batch:
                    break
                request = item[0]
                if request.chars <= SHORT_CHARS and (request.target, request.max_tokens, request.float16) == (
                    first[0].target,
                    first[0].max_tokens,
                    first[0].float16,
                ):
                    self._waiting.remove(item)
                    batch.append(item)
        return batch

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._waiting:
                    self._worker = None  # under the lock: a request queued after this starts a new worker
                    return
                batch = self._next_batch()
                self._running = len(batch)
            live = [(r, f) for r, f in batch if f.set_running_or_notify_cancel()]
            try:
                self._run(live)
            finally:
                with self._lock:
                    self._running = 0

    def _run(self, batch: list[tuple[Request, Future[Trace]]]) -> None:
        if not batch:
            return
        first = batch[0][0]
        with self._lock:
            self._passes[len(batch)] += 1
        try:
            traces = trace_batch(
                self.loaded,
                [r.prompt for r, _ in batch],
                target=first.target,
                max_tokens=first.max_tokens,
                float16=first.float16,
            )
        except Exception as problem:  # noqa: BLE001 - handed to the caller through its future
            if len(batch) == 1:
                batch[0][1].set_exception(problem)
                return
            for item in batch:  # one bad prompt must not fail the others: retry each alone
                self._run([item])
            return
        for (_, future), result in zip(batch, traces, strict=True):
            future.set_result(result)


class Turns:
    """One long job at a time, in arrival order; a waiting caller hears how many jobs are ahead of it."""

    def __init__(self) -> None:
        self._line: deque[object] = deque()
        self._changed = threading.Condition()

    def __len__(self) -> int:
        """Jobs running or waiting."""
        with self._changed:
            return len(self._line)

    @contextmanager
    def turn(self, waiting: Callable[[int], None] | None = None, poll: float = 0.5) -> Iterator[None]:
        """Wait for this caller's turn, calling ``waiting(ahead)`` about every ``poll`` seconds meanwhile.

        The caller leaves the line however it ends, also when ``waiting`` raises (a page stopped).
        """
        ticket = object()
        with self._changed:
            self._line.append(ticket)
        try:
            while True:
                with self._changed:
                    ahead = self._line.index(ticket)
                    if ahead == 0:
                        break
                    self._changed.wait(poll)
                    ahead = self._line.index(ticket)
                if ahead and waiting is not None:
                    waiting(ahead)
            yield
        finally:
            with self._changed:
                self._line.remove(ticket)
                self._changed.notify_all()
