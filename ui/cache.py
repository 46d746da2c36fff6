"""Streamlit caching of models and results: the one place cache keys are built.

``st.cache_resource`` keeps one LoadedModel per name for all sessions, with one
:class:`attnviz.tracing.batching.TraceQueue` that batches the traces sessions ask for at the same
time, and one :class:`attnviz.sources.answers.AnswerQueue` that batches their Sources answers.
Traces live in a store bounded in bytes (:class:`TraceStore`); ``st.cache_data`` keeps the small
results derived from a trace, so moving a slider never re-runs the model.
Limits come from the environment so a teacher can size a shared server.
"""

from __future__ import annotations

import copy
import os
import threading
from collections.abc import Hashable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import streamlit as st
import torch
from cachetools import LRUCache

import attnviz
from attnviz.heads.ablation import AblationResult, ablate_heads
from attnviz.heads.aggregate import ValueNorms, aggregate_map, reduced_aggregate, value_norms
from attnviz.heads.atlas import Atlas, load_atlas
from attnviz.heads.compare import latest_atlas
from attnviz.heads.first_view import FirstView
from attnviz.heads.first_view import first_view as first_view_of
from attnviz.heads.grid import HeadGrid, grid_of_thumbnails, head_grid
from attnviz.heads.stats import HeadStats, head_stats, induction_scores
from attnviz.heads.summary import Progress, Summary
from attnviz.hooks import Site, Stack
from attnviz.learn.recompute import first_layer
from attnviz.learn.toy import toy
from attnviz.learn.verify import Verification, verify
from attnviz.learn.walkthrough import Walkthrough
from attnviz.masks.runs import MaskComparison, ModelMasks, compare_mask, read_masks
from attnviz.models.loading import LoadedModel, model_name
from attnviz.sources.answers import AnswerQueue
from attnviz.tracing.batching import Request, TraceQueue, Turns
from attnviz.tracing.inputs import Messages, batch_inputs, encode
from attnviz.tracing.layer_inputs import trace_head
from attnviz.tracing.stacks import stack_view, stacks_of
from attnviz.tracing.trace import Trace, trace

torch.set_num_threads(min(2, torch.get_num_threads()))

# Explore's first view of any prompt is summarised during the forward pass (see first_view): the grid
# and statistics come from a Summary and only the chosen head is recorded in full; aggregates recompute
# layers from the kept inputs, keeping head means. Prompts up to MAX_TOKENS can also be traced in full for
# the views that need every map (bertviz, encoder-decoders; 1,024 SmolLM2 tokens: 0.6 GB of float16 maps);
# longer ones, up to MAX_LONG_TOKENS (and the model's context), never are. A teacher lowers
# ATTNVIZ_MAX_LONG_TOKENS on a shared server.
MAX_TOKENS = int(os.environ.get("ATTNVIZ_MAX_TOKENS", "1024"))
MAX_LONG_TOKENS = max(MAX_TOKENS, int(os.environ.get("ATTNVIZ_MAX_LONG_TOKENS", "8192")))
MAX_CHARS = int(os.environ.get("ATTNVIZ_MAX_CHARS", str(8 * MAX_LONG_TOKENS)))  # checked before tokenizing
TRACE_CACHE_BYTES = int(float(os.environ.get("ATTNVIZ_TRACE_CACHE_MB", "2048")) * 1e6)
FIRST_VIEW_CACHE_BYTES = int(float(os.environ.get("ATTNVIZ_FIRST_VIEW_CACHE_MB", "1024")) * 1e6)
PROGRESS_POLL_S = 0.25  # how often a session waiting for another's first view passes on its progress


@dataclass(frozen=True)
class Prompt:
    """What one trace is of: a model and either plain text or a chat message (plus decoder text)."""

    model: str
    text: str
    chat: bool = False
    target: str | None = None

    @property
    def messages(self) -> Messages | None:
        return [{"role": "user", "content": self.text}] if self.chat else None

    def request(self) -> Request:
        """What the model's trace queue needs to trace this prompt."""
        if self.chat:
            return Request(None, ((("role", "user"), ("content", self.text)),), self.target, MAX_TOKENS, True)
        return Request(self.text, None, self.target, MAX_TOKENS, True)


@dataclass(frozen=True)
class ServedModel:
    """One shared model, the queue that traces prompts with it, the queue that answers Sources questions
    with it (batched generation), turns for long jobs on it (ablation, calibration), and ``counter``: the
    same model with its own tokenizer copy and lock, so counting a prompt's tokens never waits for a running
    forward pass."""

    loaded: LoadedModel
    queue: TraceQueue
    answers: AnswerQueue
    turns: Turns
    counter: LoadedModel


@st.cache_resource(show_spinner=False, max_entries=int(os.environ.get("ATTNVIZ_MAX_MODELS", "3")))
def _served(name: str) -> ServedModel:
    """The shared model for ``name`` and its queues (no st elements inside: cached functions replay them)."""
    loaded = attnviz.load_model(name)
    counter = replace(loaded, tokenizer=copy.deepcopy(loaded.tokenizer), lock=threading.RLock())
    return ServedModel(loaded, TraceQueue(loaded), AnswerQueue(loaded), Turns(), counter)


def served(name: str) -> ServedModel:
    """The shared model for ``name``, cached under its one name (``/x`` and ``/x/`` are one model)."""
    return _served(model_name(name))


def load(name: str) -> LoadedModel:
    """The shared model for ``name`` (loaded once for every session)."""
    return served(name).loaded


def _arrays(traced: Trace) -> list[np.ndarray]:
    """The arrays a trace holds (decoder and cross only for encoder-decoders; thumbnails if reduced)."""
    arrays = (traced.attention, traced.decoder_attention, traced.cross_attention, traced.thumbnails)
    return [a for a in arrays if a is not None]


def _nbytes(traced: Trace) -> int:
    return sum(a.nbytes for a in _arrays(traced))


def _freeze(traced: Trace) -> Trace:
    """Make a shared trace's arrays read-only, so no page can change what other sessions see."""
    for array in _arrays(traced):
        array.flags.writeable = False
    return traced


class TraceStore:
    """Traces shared by all sessions, least recently used evicted past a byte budget.

    A ``st.cache_resource`` with ``max_entries`` counts traces, not bytes: three 1,024-token
    traces are 3 GB while a class's 20-token traces are 0.4 MB each. Requests for a prompt
    already being traced share its future, so a prompt is never traced twice at once.
    """

    def __init__(self, budget: int) -> None:
        self._done: LRUCache[Prompt, Trace] = LRUCache(maxsize=budget, getsizeof=_nbytes)
        self._pending: dict[Prompt, Future[Trace]] = {}
        self._lock = threading.Lock()

    def future(self, prompt: Prompt) -> Future[Trace]:
        """The trace of ``prompt``: finished, in flight, or newly queued on its model."""
        with self._lock:
            if prompt in self._done:
                ready: Future[Trace] = Future()
                ready.set_result(self._done[prompt])  # reading it makes it the most recently used
                return ready
            if prompt in self._pending:
                return self._pending[prompt]
        queue = served(prompt.model).queue  # may load the model: outside the lock
        with self._lock:
            if prompt in self._pending:
                return self._pending[prompt]
            future = self._pending[prompt] = queue.submit(prompt.request())
        future.add_done_callback(lambda done: self._finish(prompt, done))
        return future

    def queue_position(self, prompt: Prompt, future: Future[Trace]) -> int:
        """How many requests the model traces before ``future``."""
        return served(prompt.model).queue.ahead_of(future)

    def _finish(self, prompt: Prompt, future: Future[Trace]) -> None:
        with self._lock:
            self._pending.pop(prompt, None)
            if future.cancelled() or future.exception() is not None:
                return
            try:
                self._done[prompt] = _freeze(future.result())
            except ValueError:  # larger than the whole budget: its requester has it, the store does not keep it
                pass

    def __len__(self) -> int:
        return len(self._done)


@st.cache_resource(show_spinner=False)
def trace_store() -> TraceStore:
    """The one trace store of this server."""
    return TraceStore(TRACE_CACHE_BYTES)


class SharedResults:
    """Finished results of long jobs that every session may reuse, least recently used evicted past
    ``max_entries``: thirty students pressing Answer on the same demo compute it once."""

    def __init__(self, max_entries: int) -> None:
        self._done: LRUCache[Hashable, object] = LRUCache(maxsize=max_entries)
        self._lock = threading.Lock()  # every session's script thread reads and writes it

    def get(self, key: Hashable) -> object | None:
        with self._lock:
            return self._done.get(key)

    def put(self, key: Hashable, value: object) -> None:
        with self._lock:
            self._done[key] = value

    def clear(self) -> None:
        """Forget every result (e.g. after the retrieval heads were chosen again)."""
        with self._lock:
            self._done.clear()


@st.cache_resource(show_spinner=False)
def attributions() -> SharedResults:
    """Sources results of this server, keyed on the whole request (model, question, passages, options)."""
    return SharedResults(64)


def prompt_trace(prompt: Prompt) -> Trace:
    """The trace of ``prompt``, waiting for it if it is queued (see ``ui.widgets.run_trace`` for feedback).

    Weights are kept in float16: 3 significant digits, all any view shows (colours, hover
    ``.3g``; statistics and aggregates compute in float32), at half the memory and copying.
    """
    return trace_store().future(prompt).result()


@st.cache_data(show_spinner=False, max_entries=64)
def token_count(prompt: Prompt) -> int:
    """How many tokens the prompt has, counted with the model's spare tokenizer (never waits for a forward pass)."""
    return len(encode(served(prompt.model).counter, None if prompt.chat else prompt.text, prompt.messages))


def is_long(prompt: Prompt) -> bool:
    """Whether the prompt is summarised rather than traced in full."""
    return token_count(prompt) > MAX_TOKENS


def summarised(prompt: Prompt) -> bool:
    """Whether Explore's first view comes from a summary (every prompt but an encoder-decoder's short
    one, whose three stacks a summary of the main stack does not cover) rather than a full trace."""
    return is_long(prompt) or load(prompt.model).kind != "encoder-decoder"


def _first_view(prompt: Prompt, progress: Progress, detail: tuple[int, int] | None) -> FirstView:
    """One forward pass that keeps no full map but the detail head's, for a prompt within the full-trace limit
    (a long prompt's map would hold n² floats in the store: its heads open from the kept inputs)."""
    text = None if prompt.chat else prompt.text
    return first_view_of(
        load(prompt.model), text, messages=prompt.messages, target=prompt.target,
        detail=None if is_long(prompt) else detail, progress=progress,
    )  # fmt: skip


class _PendingView(Future[FirstView]):
    """A first view being computed, and the layers its pass has done so far (for the sessions waiting)."""

    layers: tuple[int, int] | None = None


class FirstViewStore:
    """First views shared by all sessions, least recently used evicted past a byte budget.

    A view keeps from ~2 MB (a class's short prompt) to 566 MB (8,192 tokens), so a count bound
    either wastes memory or lets a few long prompts hold gigabytes. Sessions asking for a view
    being computed wait for that one computation instead of starting their own, and see its progress.
    """

    def __init__(self, budget: int) -> None:
        self._done: LRUCache[Prompt, FirstView] = LRUCache(maxsize=budget, getsizeof=lambda view: view.nbytes)
        self._pending: dict[Prompt, _PendingView] = {}
        self._lock = threading.Lock()

    def get(
        self, prompt: Prompt, progress: Progress | None = None, detail: tuple[int, int] | None = None
    ) -> FirstView:
        """The first view of ``prompt``: kept, being computed by another session, or computed now (recording
        the ``detail`` (layer, head) in full); ``progress`` is told the layers done while it is computed
        (by this session or another)."""
        with self._lock:
            if prompt in self._done:
                return self._done[prompt]  # reading it makes it the most recently used
            waiting = self._pending.get(prompt)
            if waiting is None:
                mine = self._pending[prompt] = _PendingView()
        if waiting is not None:
            return self._wait(waiting, progress)

        def report(done: int, total: int) -> None:
            mine.layers = (done, total)
            if progress is not None:
                progress(done, total)

        try:
            view = _first_view(prompt, report, detail)
        except BaseException as error:
            with self._lock:
                self._pending.pop(prompt)
            mine.set_exception(error)
            raise
        with self._lock:
            self._pending.pop(prompt)
            try:
                self._done[prompt] = view
            except ValueError:  # larger than the whole budget: its requester has it, the store does not keep it
                pass
        mine.set_result(view)
        return view

    @staticmethod
    def _wait(pending: _PendingView, progress: Progress | None) -> FirstView:
        """Another session's computation, its progress relayed to ``progress`` meanwhile."""
        while True:
            try:
                return pending.result(timeout=PROGRESS_POLL_S)
            except TimeoutError:
                if progress is not None and pending.layers is not None:
                    progress(*pending.layers)

    def __len__(self) -> int:
        return len(self._done)


@st.cache_resource(show_spinner=False)
def first_views() -> FirstViewStore:
    """The one first-view store of this server."""
    return FirstViewStore(FIRST_VIEW_CACHE_BYTES)


def first_view(
    prompt: Prompt, progress: Progress | None = None, detail: tuple[int, int] | None = None
) -> FirstView:
    """What Explore's first screen shows of a summarised prompt (see :func:`summarised`), kept for every session;
    ``detail`` is the (layer, head) the first screen shows in full, recorded in the same pass."""
    return first_views().get(prompt, progress, detail)


@st.cache_data(show_spinner=False, max_entries=8)
def summary(prompt: Prompt) -> Summary:
    """Every head's thumbnail and statistics of the main stack, reduced during one forward pass (KB, not GB)."""
    return first_view(prompt).summary


@st.cache_data(show_spinner=False, max_entries=8)
def summary_grid(prompt: Prompt) -> HeadGrid:
    """The head grid of a summarised prompt, from its summary's thumbnails."""
    found = summary(prompt)
    return grid_of_thumbnails(found.thumbnails, found.layers, found.heads)


@st.cache_resource(show_spinner=False, max_entries=4, ttl=3600)
def head_trace(prompt: Prompt, layer: int, head: int) -> Trace:
    """One head's full map of a summarised prompt (268 MB at 8,192 tokens), its queries recorded in chunks:
    recorded during the summary pass when it is the head that pass was asked for, else from its layer's kept
    input alone where the pass kept one, else from a full pass."""
    view = first_view(prompt)
    recorded, kept = view.head(layer, head), view.inputs
    if recorded is not None:
        return _freeze(recorded)
    if kept is not None:
        return _freeze(trace_head(load(prompt.model), kept, layer, head))
    text = None if prompt.chat else prompt.text
    result = trace(
        load(prompt.model), text, messages=prompt.messages, target=prompt.target, layers=[layer], heads=[head],
        max_tokens=None,
    )  # fmt: skip
    return _freeze(result)


@st.cache_data(show_spinner=False, max_entries=16)
def grid(prompt: Prompt, stack: Stack) -> HeadGrid:
    """Thumbnails of every head of one stack (small: the browser never gets the full tensor)."""
    traced = prompt_trace(prompt)
    if traced.thumbnails is not None and stack == stacks_of(traced)[0]:  # reduced during the forward pass
        return grid_of_thumbnails(traced.thumbnails, traced.layers, traced.heads)
    view = stack_view(traced, stack)
    return head_grid(view.attention, view.layers, traced.heads)


@st.cache_data(show_spinner=False, max_entries=16)
def statistics(prompt: Prompt, stack: Stack) -> HeadStats:
    """Entropy, distance, first-token and previous-token statistics of every head of one stack."""
    traced = prompt_trace(prompt)
    view = stack_view(traced, stack)
    return head_stats(view.attention, view.layers, traced.heads, self_attention=stack != "cross")


@st.cache_data(show_spinner=False, max_entries=4)
def induction(model: str) -> np.ndarray:
    """Induction score [layers, heads] of the model's main stack, on repeated random tokens."""
    return induction_scores(load(model))


@st.cache_resource(show_spinner=False, max_entries=4)
def _stored_atlas(path: Path, modified_ns: int) -> Atlas:
    """An atlas file read once per version of it (a few MB; shared read-only by every session)."""
    found = load_atlas(path)
    for array in (found.values, found.mean, found.low, found.high):
        array.flags.writeable = False
    return found


def corpus_atlas(model: str) -> Atlas | None:
    """The newest atlas of this model in the disk cache (built on the Heads page or the CLI), or None."""
    return latest_atlas(load(model), read=lambda path: _stored_atlas(path, path.stat().st_mtime_ns))


@st.cache_data(show_spinner=False, max_entries=64)
def toy_walkthrough(sentence: str, mask_choice: str, scaled: bool, temperature: float) -> Walkthrough:
    """The Learn page's toy walkthrough (tiny: 6 numbers per token)."""
    return toy(sentence, mask_choice, scaled, temperature)


@st.cache_data(show_spinner=False, max_entries=32)
def model_walkthrough(
    model: str, sentence: str, mask_choice: str, scaled: bool, temperature: float
) -> Walkthrough:
    """The loaded decoder's first layer recomputed step by step (at most 16 tokens)."""
    return first_layer(load(model), sentence, mask_choice, scaled, temperature)


@st.cache_data(show_spinner=False, max_entries=32)
def walkthrough_check(model: str, sentence: str, mask_choice: str) -> Verification:
    """The recomputed first layer against the model's own weights and output."""
    return verify(load(model), sentence, mask_choice)


@st.cache_data(show_spinner=False, max_entries=16)
def norms(prompt: Prompt, stack: Stack) -> ValueNorms:
    """‖f_h(x_k)‖ for every head of one stack (one extra forward pass)."""
    return value_norms(load(prompt.model), prompt_trace(prompt), stack)


@st.cache_data(show_spinner=False, max_entries=64)
def aggregate(prompt: Prompt, stack: Stack, name: str, layer: int) -> np.ndarray:
    """The [queries, keys] map of one aggregate (see attnviz.heads.aggregate.AGGREGATES), ``layer`` an index.

    A summarised prompt's (decoders and encoders) comes from its first view's kept layer inputs, keeping only
    head means (a forward pass where none were kept), never a full trace; an encoder-decoder's short prompt
    already has its full trace (three stacks, the decoder's reading the encoder's output) and reads that.
    """
    if summarised(prompt):
        loaded, kept = load(prompt.model), first_view(prompt).inputs
        if kept is not None:
            return reduced_aggregate(loaded, kept, name, layer)
        batch = batch_inputs(loaded, [prompt.messages or prompt.text], target=prompt.target, max_tokens=None)
        return reduced_aggregate(loaded, batch.inputs, name, layer)
    value = norms(prompt, stack) if name == "value-norm weighted" else None
    return aggregate_map(stack_view(prompt_trace(prompt), stack), name, layer, value)


@st.cache_data(show_spinner=False, max_entries=32)
def ablation(prompt: Prompt, sites: tuple[tuple[Site, tuple[int, ...]], ...], k: int) -> AblationResult:
    """Top-k next tokens with and without the heads of ``sites`` switched off."""
    # Ablation needs only the prompt's inputs: for a summarised prompt, one head's trace carries them.
    traced = head_trace(prompt, 0, 0) if summarised(prompt) else prompt_trace(prompt)
    return ablate_heads(load(prompt.model), traced, dict(sites), k)


@st.cache_data(show_spinner=False, max_entries=8)  # two runs' attention: ~35 MB at 128 tokens
def mask_comparison(model: str, input_ids: tuple[int, ...], allowed: np.ndarray) -> MaskComparison:
    """The prompt's run with the model's own mask next to the run under ``allowed``, once per mask."""
    return compare_mask(load(model), input_ids, allowed)


@st.cache_data(show_spinner=False, max_entries=16)
def model_masks(model: str, prompts: tuple[Prompt, ...]) -> ModelMasks:
    """Masks the model applied to a batch of prompts of one model (all with the same decoder text)."""
    batch = [p.messages if p.chat else p.text for p in prompts]
    return read_masks(load(model), batch, prompts[0].target if prompts else None)
