"""What every page shares: the model picker, cached model loading and tracing, errors.

Caching lives here only: ``st.cache_resource`` keeps one LoadedModel per name for all
sessions (its lock serialises use), ``st.cache_data`` keeps traces per (model, prompt)
so moving a slider never re-runs the model.
"""

from __future__ import annotations

import json

import numpy as np
import streamlit as st
import torch

import attnviz
from attnviz.attribution import Attribution, attribute
from attnviz.ablation import AblationResult, ablate_heads
from attnviz.aggregate import StackView, ValueNorms, aggregate_map, stack_view, value_norms
from attnviz.grid import HeadGrid, head_grid
from attnviz.hooks import Site, Stack
from attnviz.stats import HeadStats, head_stats, induction_scores
from attnviz.loading import BUILTINS, DEFAULT_MODEL, LoadedModel, ModelLoadError
from attnviz.masks import MaskComparison, ModelMasks, compare_mask, read_masks
from attnviz.trace import PromptError, Trace, trace

torch.set_num_threads(min(2, torch.get_num_threads()))


def _leave_legacy_pages_mode() -> None:
    """Use app.py's navigation even when a fresh server is first opened at a page URL.

    Streamlit runs a ``pages/`` folder in its legacy multipage mode (its own menu,
    listing helper modules, without app.py) until some session calls st.navigation.
    Pages import this module first, so flip that process-wide flag and rerun once.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_legacy_pages_mode()

CUSTOM = "Other (folder or Hugging Face id)…"


@st.cache_resource(show_spinner=False, max_entries=4)
def _load(name: str) -> LoadedModel:
    # No st elements in here: cached functions replay them on every hit, and a replayed
    # st.status stays "Loading…" forever (its update() is not replayed).
    return attnviz.load_model(name)


def get_model(name: str) -> LoadedModel | None:
    """The shared model for ``name``, or None after showing a readable error."""
    try:
        with st.spinner(f"Loading {name}… (a built-in model's first use converts it, ~15 s)"):
            return _load(name)
    except ModelLoadError as error:
        st.error(str(error), icon="🚫")
        return None


def model_picker(key: str = "model", default: str = DEFAULT_MODEL) -> str:
    """Sidebar choice of a built-in model or any folder / hub id; kept in the URL."""
    options = [*BUILTINS, CUSTOM]
    current = st.query_params.get(key, default)
    index = options.index(current) if current in BUILTINS else options.index(CUSTOM)
    choice = st.sidebar.selectbox(
        "Model", options, index=index, key=f"{key}_select", help="Built-in models work offline."
    )
    if choice == CUSTOM:
        choice = st.sidebar.text_input(
            "Folder or Hugging Face id",
            value="" if current in BUILTINS else current,
            key=f"{key}_custom",
            help="A local folder with safetensors weights, or a hub id (needs ATTNVIZ_ONLINE=1).",
        ).strip()
        if not choice:
            st.info("Type a model folder or Hugging Face id in the sidebar.")
            st.stop()
    st.query_params[key] = choice
    return choice


@st.cache_resource(show_spinner=False, max_entries=3, ttl=3600)
def cached_trace(model_name: str, text: str | None, messages_json: str | None, target: str | None) -> Trace:
    """Trace once per (model, prompt); messages are passed as JSON so the cache can hash them.

    A resource cache, not a data cache: a 1,024-token SmolLM2 trace is 1.1 GB, which
    ``st.cache_data`` would pickle and copy on every rerun. The arrays are made
    read-only so the one shared Trace cannot be changed by a page.
    """
    loaded = _load(model_name)
    messages = json.loads(messages_json) if messages_json else None
    result = trace(loaded, text, messages=messages, target=target or None)
    for array in (result.attention, result.decoder_attention, result.cross_attention):
        if array is not None:
            array.flags.writeable = False
    return result


def run_trace(
    model_name: str, text: str | None = None, messages: list[dict[str, str]] | None = None, target: str | None = None
) -> Trace | None:
    """Trace with a spinner; show prompt errors as messages instead of tracebacks."""
    try:
        with st.spinner("Running the model…"):
            return cached_trace(model_name, text, json.dumps(messages) if messages else None, target)
    except PromptError as error:
        st.warning(str(error), icon="✏️")
        return None


# Explore page: results derived from one cached trace, each cached, so widgets never re-run the model.


def _view(model_name: str, text: str | None, messages_json: str | None, target: str | None, stack: Stack) -> StackView:
    return stack_view(cached_trace(model_name, text, messages_json, target), stack)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_head_grid(model_name: str, text: str | None, messages_json: str | None, target: str | None, stack: Stack) -> HeadGrid:
    """Thumbnails of every head of one stack (small: the browser never gets the full tensor)."""
    trace = cached_trace(model_name, text, messages_json, target)
    view = stack_view(trace, stack)
    return head_grid(view.attention, view.layers, trace.heads)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_head_stats(model_name: str, text: str | None, messages_json: str | None, target: str | None, stack: Stack) -> HeadStats:
    """Entropy, distance, first-token and previous-token statistics of every head of one stack."""
    trace = cached_trace(model_name, text, messages_json, target)
    view = stack_view(trace, stack)
    return head_stats(view.attention, view.layers, trace.heads, self_attention=stack != "cross")


@st.cache_data(show_spinner=False, max_entries=4)
def cached_induction(model_name: str) -> np.ndarray:
    """Induction score [layers, heads] of the model's main stack, on repeated random tokens."""
    return induction_scores(_load(model_name))


@st.cache_data(show_spinner=False, max_entries=16)
def cached_value_norms(model_name: str, text: str | None, messages_json: str | None, target: str | None, stack: Stack) -> ValueNorms:
    """‖f_h(x_k)‖ for every head of one stack (one extra forward pass)."""
    return value_norms(_load(model_name), cached_trace(model_name, text, messages_json, target), stack)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_aggregate(
    model_name: str, text: str | None, messages_json: str | None, target: str | None, stack: Stack, name: str, layer: int
) -> np.ndarray:
    """The [queries, keys] map of one aggregate (see attnviz.aggregate.AGGREGATES)."""
    norms = cached_value_norms(model_name, text, messages_json, target, stack) if name == "value-norm weighted" else None
    return aggregate_map(_view(model_name, text, messages_json, target, stack), name, layer, norms)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_ablation(
    model_name: str, text: str | None, messages_json: str | None, target: str | None,
    ablate: tuple[tuple[Stack, int, tuple[int, ...]], ...], k: int,
) -> AblationResult:  # fmt: skip
    """Top-k next tokens with and without the ``ablate`` heads, given as (stack, layer, heads)."""
    sites = {Site(stack, layer): heads for stack, layer, heads in ablate}
    return ablate_heads(_load(model_name), cached_trace(model_name, text, messages_json, target), sites, k)


@st.cache_data(show_spinner=False, max_entries=8)  # two runs' attention: ~35 MB at 128 tokens
def cached_compare_mask(model_name: str, input_ids: tuple[int, ...], allowed: np.ndarray) -> MaskComparison:
    """The prompt's run with the model's own mask next to the run under ``allowed``, once per mask."""
    return compare_mask(_load(model_name), input_ids, allowed)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_read_masks(model_name: str, prompts_json: str, target: str | None) -> ModelMasks:
    """Masks the model applied to a batch of prompts (JSON: strings or chat message lists)."""
    return read_masks(_load(model_name), json.loads(prompts_json), target or None)


# Sources page: one attribution per (model, question, passages, methods, length).


@st.cache_data(show_spinner=False, max_entries=16)
def cached_attribution(
    model_name: str, question: str, passages: tuple[str, ...], methods: tuple[str, ...], max_new_tokens: int
) -> Attribution:
    """Answer and attribution of a question over passages (calibrates the model's heads on first use)."""
    return attribute(_load(model_name), question, list(passages), method=methods, max_new_tokens=max_new_tokens)


def run_attribution(
    model_name: str, question: str, passages: list[str], methods: tuple[str, ...], max_new_tokens: int
) -> Attribution | None:
    """Attribution with a spinner; bad input becomes a warning instead of a traceback."""
    try:
        with st.spinner("Answering and attributing (the first run of a model also finds its retrieval heads)…"):
            return cached_attribution(model_name, question, tuple(passages), methods, max_new_tokens)
    except PromptError as error:
        st.warning(str(error), icon="✏️")
        return None
