"""Widgets and messages every page shares: the model picker, URL-backed state, readable errors.

User text (model names, prompts, file names, query parameters) is never passed to Markdown
unescaped: :func:`plain` makes it literal wherever Streamlit renders Markdown.
"""

from __future__ import annotations

import re

import streamlit as st

from attnviz.loading import BUILTINS, DEFAULT_MODEL, LoadedModel, ModelLoadError
from attnviz.trace import PromptError, Trace
from ui import cache

CUSTOM = "Other (folder or Hugging Face id)…"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")


def plain(text: str) -> str:
    """``text`` escaped so Streamlit's Markdown shows it literally (no links, images, HTML or maths)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def error(message: str, icon: str = "🚫") -> None:
    """An error box whose text is shown literally."""
    st.error(plain(message), icon=icon)


def warning(message: str, icon: str = "✏️") -> None:
    """A warning box whose text is shown literally."""
    st.warning(plain(message), icon=icon)


def get_model(name: str) -> LoadedModel | None:
    """The shared model for ``name``, or None after showing a readable error."""
    try:
        with st.spinner("Loading the model… (a built-in model's first use converts it, ~15 s)"):
            loaded = cache.load(name)
    except ModelLoadError as problem:
        error(str(problem))
        return None
    st.sidebar.caption(
        f"Runs on {loaded.device_label}", help="Set ATTNVIZ_DEVICE=cpu, cuda or cuda:N before starting to choose."
    )
    return loaded


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


def from_url(key: str, default: str) -> str:
    """Initialise a widget's state from the URL once, so a shared link reopens the same view."""
    if key not in st.session_state:
        st.session_state[key] = st.query_params.get(key, default)
    return st.session_state[key]


def int_from_url(key: str, options: list[int]) -> None:
    """Initialise an integer selectbox from the URL, falling back to its first option."""
    raw = st.query_params.get(key, "")
    if key not in st.session_state or st.session_state[key] not in options:
        st.session_state[key] = int(raw) if raw.lstrip("-").isdigit() and int(raw) in options else options[0]


def run_trace(prompt: cache.Prompt) -> Trace | None:
    """Trace with a spinner; prompt errors become warnings instead of tracebacks."""
    try:
        with st.spinner("Running the model…"):
            return cache.prompt_trace(prompt)
    except PromptError as problem:
        warning(str(problem))
        return None
