"""Widgets and messages every page shares: the model picker, URL-backed state, readable errors.

User text (model names, prompts, file names, query parameters) is never passed to Markdown
unescaped: :func:`plain` makes it literal wherever Streamlit renders Markdown.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

import streamlit as st
from streamlit.delta_generator import DeltaGenerator
from streamlit.runtime.scriptrunner import add_script_run_ctx

from attnviz.models.loading import LoadedModel, ModelLoadError
from attnviz.models.registry import BUILTINS, DEFAULT_MODEL
from attnviz.models.safety import canonical_name
from attnviz.tracing.inputs import PromptError, encode
from attnviz.tracing.trace import Trace
from ui import cache

CUSTOM = "Other (folder or Hugging Face id)…"
MODEL_MAX_CHARS = 300
URL_MAX_CHARS = 2_000  # longer prompts stay out of the URL (links must stay shareable)
# A progress bar shows once the work has taken a second, the limit for a user's flow of thought to stay
# uninterrupted (Nielsen, "Response Times: The 3 Important Limits"), unless the pass's own rate says it ends
# within half a second (a bar that would only flash); it is then redrawn at most every half second.
PROGRESS_AFTER_S = 1.0
PROGRESS_MIN_LEFT_S = 0.5
PROGRESS_EVERY_S = 0.5
T = TypeVar("T")
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=])")
# What GitHub-flavoured Markdown turns into a link even when escaped: scheme://…, www.…, e-mail addresses.
_AUTOLINK = re.compile(r"(?i)(?:\b[a-z][a-z0-9+.\-]*://|\bwww\.)\S*|[^\s@]+@[^\s@]+\.[^\s@]+")


def _code(text: str) -> str:
    """``text`` as inline code, whose content Markdown never turns into links or markup."""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def plain(text: str) -> str:
    """``text`` made literal for Streamlit's Markdown: no links, images, HTML or maths.

    Markup characters are backslash-escaped; URL-like runs (which GFM links even when escaped)
    are shown as inline code.
    """
    parts, last = [], 0
    for match in _AUTOLINK.finditer(text):
        parts += [_MARKDOWN_SPECIAL.sub(r"\\\1", text[last : match.start()]), _code(match.group())]
        last = match.end()
    parts.append(_MARKDOWN_SPECIAL.sub(r"\\\1", text[last:]))
    return "".join(parts).replace("\n", "  \n")


def error(message: str, icon: str = "🚫") -> None:
    """An error box whose text is shown literally."""
    st.error(plain(message), icon=icon)


def warning(message: str, icon: str = "✏️") -> None:
    """A warning box whose text is shown literally."""
    st.warning(plain(message), icon=icon)


def seconds_left(elapsed: float, done: int, left: int) -> float | None:
    """Seconds ``left`` more layers take at the rate of ``done`` layers in ``elapsed`` seconds (None: no rate yet)."""
    return None if done <= 0 else elapsed * left / done


class LayerProgress:
    """A progress bar for a pass reduced layer by layer (a :data:`attnviz.heads.summary.Progress`),
    removed when the ``with`` block ends.

    Unlike ``st.spinner``, whose icon spins at 60 frames a second (without a GPU, Chromium spent 0.3 CPU-s
    redrawing it during a 2 s pass, on the cores the pass needs), it is drawn once the block has run
    :data:`PROGRESS_AFTER_S` with at least :data:`PROGRESS_MIN_LEFT_S` to go (a shorter pass, or a result that
    needs none, draws nothing: the bar's appearing and leaving cost Chromium ~0.08 CPU-s, measured, beside a
    512-token pass) and then redrawn at most every :data:`PROGRESS_EVERY_S`. Like the spinner it shows from
    a timer thread, so a session queued for the shared model, whose pass has not started, still sees it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._slot: DeltaGenerator | None = None
        self._drawn = False
        self._start = self._next_draw = 0.0
        self._layers: tuple[int, int] | None = None  # the latest (done, total) told
        self._origin: tuple[float, int] | None = None  # (when, layers done) the pass's rate is counted from
        self._lock = threading.Lock()  # the timer thread and the pass both draw
        self._timer: threading.Timer | None = None

    def __enter__(self) -> Self:
        self._slot = st.empty()
        self._start = time.monotonic()
        self._timer = threading.Timer(PROGRESS_AFTER_S, self._update)
        add_script_run_ctx(self._timer)
        self._timer.start()
        return self

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            if self._origin is None:
                # This session's own pass counts from layer 0 at the block's start; another session's pass, joined
                # midway, from the first progress relayed.
                self._origin = (self._start, 0) if done <= 1 else (time.monotonic(), done)
            self._layers = (done, total)
        self._update()

    def _update(self) -> None:
        """Draw the bar if it is due: first after PROGRESS_AFTER_S with enough left, then every PROGRESS_EVERY_S."""
        with self._lock:
            now, layers, origin = time.monotonic(), self._layers, self._origin
            if self._slot is None or now - self._start < PROGRESS_AFTER_S or now < self._next_draw:
                return
            if layers is None or origin is None:  # queued, or before the first layer
                self._slot.progress(0.0, text=f"{self.text}…")
            else:
                done, total = layers
                left = seconds_left(now - origin[0], done - origin[1], total - done)
                if not self._drawn and left is not None and left < PROGRESS_MIN_LEFT_S:
                    return
                self._slot.progress(done / total, text=f"{self.text}: layer {done} of {total}")
            self._drawn, self._next_draw = True, now + PROGRESS_EVERY_S

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._lock:
            if self._slot is not None:
                self._slot.empty()
            self._slot = None


def get_model(name: str) -> LoadedModel | None:
    """The shared model for ``name``, or None after showing a readable error."""
    try:
        with st.spinner("Loading the model… (a built-in model's first use converts it, ~15 s)"):
            loaded = cache.load(name)
    except ModelLoadError as problem:
        error(str(problem))
        return None
    st.sidebar.caption(
        f"Runs on {loaded.device_label}",
        help="Set ATTNVIZ_DEVICE=cpu, cuda or cuda:N before starting to choose.",
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
            value="" if current in BUILTINS else current[:MODEL_MAX_CHARS],
            key=f"{key}_custom",
            max_chars=MODEL_MAX_CHARS,
            help="A folder with safetensors weights inside the folders this server allows (ATTNVIZ_MODEL_DIRS), "
            "or a Hugging Face id (downloads need ATTNVIZ_ONLINE=1).",
        ).strip()
        if not choice:
            st.info("Type a model folder or Hugging Face id in the sidebar.")
            st.stop()
        choice = canonical_name(choice)  # one folder, one name: every cache and the URL agree
    st.query_params[key] = choice
    return choice


def from_url(key: str, default: str) -> str:
    """Initialise a widget's state from the URL once, so a shared link reopens the same view."""
    if key not in st.session_state:
        st.session_state[key] = st.query_params.get(key, default)
    return st.session_state[key]


def _always(_: object) -> bool:
    return True


def url_state(
    key: str, default: T, parse: Callable[[str], T] = str, valid: Callable[[T], bool] = _always
) -> T:
    """Initialise widget ``key`` from the URL once: its parameter ``parse``d when ``valid``, else ``default``.

    Pair it with :func:`to_url` after the widget, so every setting that changes what is drawn is in a
    shared link. ``valid`` rejects values the widget would refuse (an option that no longer exists).
    """
    if key not in st.session_state or not valid(st.session_state[key]):
        raw = st.query_params.get(key)
        try:
            value = default if raw is None else parse(raw)
        except (ValueError, IndexError):
            value = default
        st.session_state[key] = value if valid(value) else default
    return st.session_state[key]


def to_url(key: str, text: str, default: str) -> None:
    """Put a widget's value in the URL as ``text``, or drop it when it is the ``default`` (links stay short)."""
    if text == default:
        st.query_params.pop(key, None)
    else:
        st.query_params[key] = text


def flag(raw: str) -> bool:
    """A URL flag: "1" is on, "0" off."""
    if raw not in ("0", "1"):
        raise ValueError(raw)
    return raw == "1"


def int_from_url(key: str, options: list[int]) -> None:
    """Initialise an integer selectbox from the URL, falling back to its first option."""
    raw = st.query_params.get(key, "")
    if key not in st.session_state or st.session_state[key] not in options:
        st.session_state[key] = int(raw) if raw.lstrip("-").isdigit() and int(raw) in options else options[0]


def prompt_fits(text: str, key: str | None = None) -> bool:
    """Whether ``text`` may be tokenized: not blank and at most ``cache.MAX_CHARS`` characters.

    Checked before any tokenizer runs, so a 100,000-character paste costs nothing; with the
    text widget's ``key``, a button offers to keep the prompt's first characters instead.
    """
    if not text.strip():
        warning("The prompt is empty: type something to trace.")
        return False
    if len(text) <= cache.MAX_CHARS:
        return True
    warning(
        f"The prompt has {len(text):,} characters; this server reads at most {cache.MAX_CHARS:,} characters "
        "per prompt."
    )
    if key is not None:
        st.button(
            f"Keep the first {cache.MAX_CHARS:,} characters", on_click=_replace, args=(key, text[: cache.MAX_CHARS]),
            key=f"{key}_cut_chars", help="Shorten the prompt in the text box; you can edit it further.",
        )  # fmt: skip
    return False


def _replace(key: str, text: str) -> None:
    st.session_state[key] = text


def first_tokens(loaded: LoadedModel, prompt: cache.Prompt, limit: int) -> str:
    """The longest start of ``prompt.text`` whose traced form (chat template included) has at most ``limit`` tokens."""
    text = prompt.text
    with loaded.lock:
        offsets = loaded.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
            "offset_mapping"
        ]
    keep = limit
    while keep > 0:
        cut = text[: offsets[min(keep, len(offsets)) - 1][1]]
        n = len(
            encode(loaded, messages=[{"role": "user", "content": cut}])
            if prompt.chat
            else encode(loaded, cut)
        )
        if n <= limit:
            return cut
        keep -= n - limit
    return ""


def tokens_fit(prompt: cache.Prompt, key: str | None = None, limit: int = cache.MAX_TOKENS) -> bool:
    """Whether the prompt has at most ``limit`` tokens (counted once per prompt, before any model work).

    With the text widget's ``key``, a button offers to trace the prompt's first tokens instead.
    """
    counter = cache.served(prompt.model).counter
    if counter.tokenizer is None:
        return True  # trace() says why it cannot run
    n = cache.token_count(prompt)
    if n <= limit:
        return True
    warning(f"The prompt has {n:,} tokens; this server traces at most {limit:,} tokens per prompt.")
    if key is not None and getattr(counter.tokenizer, "is_fast", False):
        st.button(
            f"Trace the first {limit:,} tokens", key=f"{key}_cut_tokens",
            on_click=_replace, args=(key, first_tokens(counter, prompt, limit)),
            help="Shorten the prompt in the text box to the part that fits, then trace it.",
        )  # fmt: skip
    return False


def run_trace(prompt: cache.Prompt, key: str | None = None) -> Trace | None:
    """Trace ``prompt`` (its text widget's ``key`` enables truncation offers), showing the queue while it waits.

    Bad input (blank, too long, no tokenizer) becomes a warning instead of a traceback.
    """
    try:
        if not prompt_fits(prompt.text, key) or not tokens_fit(prompt, key):
            return None
        store = cache.trace_store()
        future = store.future(prompt)
        if not future.done():
            with st.spinner("Running the model…"):
                status, shown = st.empty(), ""
                while True:
                    try:
                        future.result(timeout=0.3)
                        break
                    except TimeoutError:
                        ahead = store.queue_position(prompt, future)
                        text = (
                            f"Queued: {ahead} request(s) ahead of yours on this shared model."
                            if ahead
                            else "Tracing your prompt (together with others sent at the same moment)…"
                        )
                        if text != shown:  # an unchanged caption sent again still redraws the page
                            status.caption(text)
                            shown = text
                status.empty()
        return future.result()
    except PromptError as problem:
        warning(str(problem))
        return None
