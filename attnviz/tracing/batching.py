"""Sharing one model among many sessions: queues that batch, and turns for long jobs.

Many sessions tracing short prompts at once would otherwise queue one by one on the model's
lock; a :class:`BatchQueue`'s worker instead takes every waiting request (up to ``max_batch``, of
similar length) and computes them together: :class:`TraceQueue` traces them with
:func:`attnviz.tracing.trace.trace_batch`, :class:`attnviz.sources.answers.AnswerQueue` generates
Sources answers in one batched ``generate``. A request that fails inside a batch is retried alone,
so each caller gets its own result or its own error.

Long jobs (a Sources ablation: a forward pass per source, seconds of CPU each) take
:class:`Turns`, first come first served: run side by side they would all finish late, while
short traces still slip in between their forward passes.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import DEFAULT_MAX_TOKENS, Messages
from attnviz.tracing.trace import Trace, trace_batch

SHORT_CHARS = 2_000  # only prompts up to this long share a batch; longer ones run alone
R = TypeVar("R")
T = TypeVar("T")


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


class BatchQueue(ABC, Generic[R, T]):
    """Runs requests for one model in a background thread, batching those that wait together.

    Subclasses say which waiting requests may join the oldest one (:meth:`joins`) and how a batch
    is computed (:meth:`compute`, one result per request, in order). The thread runs only while
    requests wait: it exits when the queue is empty and the next ``submit`` starts a new one. An
    idle queue therefore holds no thread, and a model dropped from the cache (with its queue) is
    freed, instead of being kept alive by a worker forever. A batch that fails is retried one
    request at a time, so each caller gets its own result or its own error.
    """

    kind = "batch"  # names the worker thread: attnviz-<kind>-<model>

    def __init__(self, loaded: LoadedModel, max_batch: int = 8) -> None:
        self.loaded = loaded
        self.max_batch = max_batch
        self._waiting: deque[tuple[R, Future[T]]] = deque()
        self._running = 0
        self._passes: Counter[int] = Counter()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    @abstractmethod
    def joins(self, first: R, request: R) -> bool:
        """Whether ``request`` may share a batch whose oldest request is ``first``."""

    @abstractmethod
    def compute(self, requests: list[R]) -> list[T]:
        """The results of ``requests``, computed together (one per request, in order)."""

    def submit(self, request: R) -> Future[T]:
        """Queue ``request``; the future holds its result or the error computing it raised."""
        future: Future[T] = Future()
        with self._lock:
            self._waiting.append((request, future))
            if self._worker is None:
                name = f"attnviz-{self.kind}-{self.loaded.info.name}"
                self._worker = threading.Thread(target=self._work, name=name, daemon=True)
                self._worker.start()
        return future

    def ahead_of(self, future: Future[T]) -> int:
        """How many requests run or wait before ``future`` (0 once it is running or done)."""
        with self._lock:
            for index, (_, waiting) in enumerate(self._waiting):
                if waiting is future:
                    return self._running + index
        return 0

    def passes_by_size(self) -> dict[int, int]:
        """How many batches have started, by how many requests each held (did batches form?)."""
        with self._lock:
            return dict(self._passes)

    def _next_batch(self) -> list[tuple[R, Future[T]]]:
        """The oldest request plus the waiting ones it can share a batch with."""
        first = self._waiting.popleft()
        batch = [first]
        for item in list(self._waiting):
            if len(batch) >= self.max_batch:
                break
            if self.joins(first[0], item[0]):
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

    def _run(self, batch: list[tuple[R, Future[T]]]) -> None:
        if not batch:
            return
        with self._lock:
            self._passes[len(batch)] += 1
        try:
            results = self.compute([r for r, _ in batch])
        except Exception as problem:  # noqa: BLE001 - handed to the caller through its future
            if len(batch) == 1:
                batch[0][1].set_exception(problem)
                return
            for item in batch:  # one bad request must not fail the others: retry each alone
                self._run([item])
            return
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)


class TraceQueue(BatchQueue[Request, Trace]):
    """Traces requests for one model, batching the short ones that wait together into one padded pass."""

    kind = "trace"

    def joins(self, first: Request, request: Request) -> bool:
        # Right padding only: left padding shifts a causal model's positions, which would change results.
        tokenizer = self.loaded.tokenizer
        same = (request.target, request.max_tokens, request.float16) == (
            first.target,
            first.max_tokens,
            first.float16,
        )
        short = first.chars <= SHORT_CHARS and request.chars <= SHORT_CHARS
        return short and same and tokenizer is not None and tokenizer.padding_side == "right"

    def compute(self, requests: list[Request]) -> list[Trace]:
        first = requests[0]
        return trace_batch(
            self.loaded,
            [r.prompt for r in requests],
            target=first.target,
            max_tokens=first.max_tokens,
            float16=first.float16,
        )


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
