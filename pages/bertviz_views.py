"""bertviz views: bertviz's head view and model view of our traces, offline and size-bounded."""

from __future__ import annotations

from ui.startup import import_library

import_library()  # first: the library is never imported beside the server's preload thread (ui.startup.IMPORTS)

from dataclasses import replace

import streamlit as st

from attnviz.views import bertviz as bv
from attnviz.views.vendor import VendorError
from ui.cache import Prompt
from ui.navigation import start_page
from ui.widgets import error, get_model, model_picker, run_trace, warning

DEFAULT_PROMPT = "The cat sat on the mat because it was tired."
DEFAULT_TARGET = "Le chat"
MAX_FRAME_HEIGHT = 2400
VIEW_NAMES = {
    "head": "Head view (one layer, all chosen heads)",
    "model": "Model view (grid of layers × heads)",
}

start_page()
st.title("bertviz views")
st.caption(
    "bertviz's head view and model view, drawn from attnviz's own traces. They work with no network "
    f"(the JavaScript is served locally) and each view is kept under {bv.MAX_BYTES / 1e6:.0f} MB."
)

name = model_picker()
loaded = get_model(name)
if loaded is None:
    st.stop()

text = st.text_area(
    "Prompt", DEFAULT_PROMPT, key="bertviz_prompt", help="Text to run through the model; tokens are shown as plain text."
)
target = None
if loaded.kind == "encoder-decoder":
    target = st.text_input(
        "Decoder text", DEFAULT_TARGET,
        help="Text the decoder reads; the view shows encoder, decoder and cross attention.",
    )
trace = run_trace(Prompt(name, text, target=target), key="bertviz_prompt")
if trace is None:
    st.stop()

view = st.radio(
    "View", bv.VIEWS, format_func=VIEW_NAMES.__getitem__, horizontal=True,
    help="Head view: lines from each token (left) to the tokens it attends to (right), one colour per head. "
    "Model view: one thumbnail per layer and head; click a thumbnail to enlarge it.",
)  # fmt: skip
default = bv.default_selection(trace, view)
# Widget keys carry the model name, so switching model starts from that model's defaults
# instead of keeping another model's layer and head choice.
left, middle, right = st.columns(3)
if view == "head":  # one layer at a time: this is the view's only layer control
    layer = left.selectbox(
        "Layer", trace.layers, index=trace.layers.index(default.layers[0]), key=f"layer_head_{name}",
        help="The layer whose heads the view draws.",
    )  # fmt: skip
    layers = [layer]
else:
    layers = left.multiselect(
        "Layers", trace.layers, default=default.layers, key=f"layers_model_{name}",
        help="Fewer layers make a smaller, faster view.",
    )  # fmt: skip
heads = middle.multiselect(
    "Heads", trace.heads, default=default.heads, key=f"heads_{view}_{name}",
    help="Head view colours follow this order (first chosen head = first colour).",
)  # fmt: skip
decimals = right.select_slider(
    "Round weights to decimals", options=[1, 2, 3, 4], value=bv.DEFAULT_DECIMALS,
    help="Fewer decimals make the page smaller; 3 decimals is finer than the eye can see in line opacity.",
)  # fmt: skip
window = st.slider(
    "Token window", 0, trace.n_tokens, value=default.window, key=f"window_{view}_{name}_{trace.n_tokens}",
    help="Only tokens in this window are drawn; attention to tokens outside it is left out. Drag either end "
    "to look at any part of a long prompt.",
)  # fmt: skip
st.caption(
    f"Why a window: bertviz draws one line per head, query and key, so lines grow with the square of the "
    f"tokens; a view is kept under {bv.MAX_LINES:,} lines and {bv.MAX_BYTES / 1e6:.0f} MB so the browser "
    "stays responsive. A line's opacity is its weight: over many tokens weights spread thin and lines fade, "
    "so a shorter window or fewer heads shows them more clearly."
)
target_window = None
if trace.target_tokens:
    target_window = st.slider(
        "Decoder token window", 0, len(trace.target_tokens), value=default.target_window,
        key=f"target_window_{view}_{len(trace.target_tokens)}",
        help="Decoder tokens drawn (decoder and cross attention).",
    )  # fmt: skip
if window[0] == window[1] or (target_window is not None and target_window[0] == target_window[1]):
    st.warning("The token window is empty: widen it to at least one token.", icon="✏️")
    st.stop()

requested = bv.Selection(tuple(sorted(layers)), tuple(sorted(heads)), window, target_window, decimals)
try:
    with st.spinner("Building the view…"):
        built = bv.fit(trace, view, requested)
except bv.ViewError as problem:
    warning(str(problem))
    st.stop()
except VendorError as problem:
    error(str(problem))
    st.stop()

subset = built.subset
shown = subset.selection
if shown != requested:
    st.warning(
        f"The token window was shortened to tokens {shown.window[0]}–{shown.window[1] - 1} to keep the view under "
        f"{bv.MAX_BYTES / 1e6:.0f} MB and {bv.MAX_LINES:,} lines; choose fewer layers or heads to see more "
        "tokens.",
        icon="✂️",
    )
# The head view always draws one layer (the Layer control), so only heads and tokens make it a subset.
every_layer = replace(subset, selection=replace(shown, layers=subset.all_layers))
if not (every_layer if view == "head" else subset).complete:
    layers_text = (
        f"layer {shown.layers[0]}" if view == "head" else f"{len(shown.layers)} of {len(subset.all_layers)} layers"
    )
    st.info(
        f"Showing a subset: {layers_text}, {len(shown.heads)} of "
        f"{len(subset.all_heads)} heads, tokens {shown.window[0]}–{shown.window[1] - 1} "
        f"of {subset.n_tokens}.",
        icon="🔎",
    )
st.caption(
    f"Page size {subset.n_bytes / 1e6:.2f} MB · {subset.n_lines:,} lines · "
    f"weights rounded to {shown.decimals} decimals · "
    f"heads in colour order: {', '.join(map(str, shown.heads))}"
)
st.download_button(
    "Download this view (HTML)", built.html, file_name=f"attnviz-{view}-view.html", mime="text/html",
    help="A standalone page with the libraries inlined: it opens offline in any browser.",
)  # fmt: skip
# st.iframe runs scripts: built.html holds no unescaped user text (see attnviz.views.bertviz).
st.iframe(built.html, height=min(built.height, MAX_FRAME_HEIGHT))
