"""Explore: every head at a glance, one head in detail, aggregates, head statistics and ablation."""

from __future__ import annotations

from ui.startup import import_library

import_library()  # first: the library is never imported beside the server's preload thread (ui.startup.IMPORTS)

from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from attnviz.heads.ablation import NoPredictionError
from attnviz.heads.aggregate import AGGREGATES, UnsupportedModelError, sink_share
from attnviz.heads.compare import Comparison, compare_head
from attnviz.heads.corpus import PROMPT_TOKENS
from attnviz.heads.stats import STATISTICS
from attnviz.hooks import Site
from attnviz.tracing.inputs import PromptError
from attnviz.tracing.prediction import RankChange, rank_changes
from attnviz.tracing.stacks import STACK_LABELS, stack_view, stacks_of
from attnviz.views import atlas_figures, figures
from ui import cache
from ui.navigation import start_page
from ui.widgets import (
    URL_MAX_CHARS,
    LayerProgress,
    flag,
    from_url,
    get_model,
    int_from_url,
    model_picker,
    plain,
    prompt_fits,
    run_trace,
    to_url,
    tokens_fit,
    url_state,
    warning,
)

DEFAULT_PROMPT = (
    "Mr and Mrs Dursley, of number four, Privet Drive, were proud to say that they were perfectly normal, "
    "thank you very much. Mr and Mrs Dursley"
)
WINDOW = 256  # tokens of the detail heatmap shown at full resolution
DETAIL = 64  # tokens the query and key windows of a long prompt start with: few enough to label each
SECTIONS = ["Heads", "Aggregates", "Head statistics", "Ablation"]
COLORSCALES = ["Viridis", "Blues", "Magma", "Cividis", "Greys"]
SINK_NOTE = 0.5  # explain the attention sink when the first token holds more of the rollout than this


def ablation_table(changes: tuple[RankChange, ...], intact: bool) -> pd.DataFrame:
    """Top-k tokens with where each stood in the other run (dataframes show text literally)."""
    table = pd.DataFrame(
        {
            "rank": [c.rank for c in changes],
            "token": [figures.visible_text(c.token) for c in changes],
            "probability": [c.probability for c in changes],
        }
    )
    if intact:
        table["rank without"] = [str(c.other_rank) if c.other_rank else "out of top-k" for c in changes]
    else:
        table["probability intact"] = [c.other_probability for c in changes]
        table["change"] = [c.mark for c in changes]
    return table


def heads_text(heads: list[tuple[int, int]]) -> str:
    """Heads for the URL: "3.1,5.2" is layer 3 head 1 and layer 5 head 2."""
    return ",".join(f"{layer}.{head}" for layer, head in heads)


def heads_from_text(text: str) -> list[tuple[int, int]]:
    """The heads of :func:`heads_text`'s form ("" is none)."""
    return [(int(layer), int(head)) for layer, head in (pair.split(".") for pair in text.split(",") if pair)]


PROBABILITY_COLUMNS = {
    name: st.column_config.NumberColumn(name, format="%.4f") for name in ("probability", "probability intact")
} | {
    "change": st.column_config.TextColumn(
        "change", help="Rank change against the intact model: ▲ up, ▼ down, = same, new = not in its top-k."
    )
}


start_page()
st.title("Explore attention")
model_name = model_picker()
loaded = get_model(model_name)
if loaded is None:
    st.stop()

modes = ["Text", "Chat message"] if loaded.info.has_chat_template else ["Text"]
if from_url("mode", "Text") not in modes:
    st.session_state["mode"] = "Text"
mode = st.sidebar.radio(
    "Prompt as", modes, key="mode", help="A chat message is wrapped in the model's chat template."
)
from_url("prompt", DEFAULT_PROMPT)
prompt = st.sidebar.text_area(
    "Chat message" if mode == "Chat message" else "Prompt", key="prompt", height=160,
    help="The text the model reads. Repeated phrases show induction heads at work.",
)  # fmt: skip
target = None
if loaded.kind == "encoder-decoder":
    from_url("target", "")
    target = st.sidebar.text_input(
        "Decoder text",
        key="target",
        help="What the decoder has produced so far (cross-attention reads the prompt).",
    )
st.query_params.update({"mode": mode, **({"target": target[:URL_MAX_CHARS]} if target is not None else {})})
if len(prompt) <= URL_MAX_CHARS:  # a long paste stays out of the URL (and out of links people share)
    st.query_params["prompt"] = prompt
else:
    st.query_params.pop("prompt", None)

prompt_key = cache.Prompt(model_name, prompt, chat=mode == "Chat message", target=target)
if not prompt_fits(prompt, key="prompt"):
    st.stop()
# A click on the grid selects a (layer, head) point: apply it before the head is chosen and its selectboxes drawn.
clicked = st.session_state.get("grid")
points = clicked.get("selection", {}).get("points", []) if clicked else []
if points and points != st.session_state.get("grid_applied"):
    st.session_state["grid_applied"] = points
    layer_clicked, head_clicked = points[0]["customdata"][:2]
    st.session_state["layer"], st.session_state["head"] = int(layer_clicked), int(head_clicked)
try:
    long_prompt = cache.is_long(prompt_key)
    if long_prompt and not tokens_fit(prompt_key, "prompt", limit=cache.MAX_LONG_TOKENS):
        st.stop()
    # The first view needs no full map: grid and statistics come from a summary of one forward pass, which
    # also records the head shown in detail (the main stack's: a summarised prompt has no other).
    summarised = cache.summarised(prompt_key)
    if summarised:
        int_from_url("layer", list(loaded.main_layers))
        int_from_url("head", list(range(loaded.n_heads)))
        wait = " (a long prompt: minutes on a CPU)" if long_prompt else ""
        with LayerProgress(f"Summarising every head{wait}") as progress:  # the pass (or another session's)
            shown_head = (st.session_state["layer"], st.session_state["head"])
            summary = cache.first_view(prompt_key, progress, shown_head).summary
except PromptError as problem:
    warning(str(problem))
    st.stop()
if summarised:
    # Grid and statistics from the summary; only the chosen head is recorded in full.
    stacks, n_tokens = [summary.stack], summary.n_tokens
    layer_options, head_options = list(summary.layers), list(summary.heads)
else:
    trace = run_trace(prompt_key, key="prompt")
    if trace is None:
        st.stop()
    stacks, n_tokens = list(stacks_of(trace)), trace.n_tokens
if from_url("stack", stacks[0]) not in stacks:
    st.session_state["stack"] = stacks[0]
stack = st.sidebar.radio(
    "Attention", stacks, key="stack", format_func=STACK_LABELS.get, disabled=len(stacks) == 1,
    help="Encoder-decoders have three kinds: encoder self, decoder self, and decoder→encoder cross-attention.",
)  # fmt: skip

if not summarised:
    view = stack_view(trace, stack)
    layer_options, head_options = list(view.layers), list(trace.heads)

int_from_url("layer", layer_options)
int_from_url("head", head_options)
left, right = st.sidebar.columns(2)
layer = left.selectbox("Layer", layer_options, key="layer", help="Layer of the head shown in detail.")
head = right.selectbox(
    "Head", head_options, key="head", help="Head shown in detail (or click one in the grid)."
)
st.query_params.update({"stack": stack, "layer": str(layer), "head": str(head)})
layer_index, head_index = layer_options.index(layer), head_options.index(head)
if summarised:
    with st.spinner(f"Recording layer {layer}, head {head} in full…"):
        view = stack_view(cache.head_trace(prompt_key, layer, head), stack)
    detail = view.attention[0, 0]
else:
    detail = view.attention[layer_index, head_index]
last = len(view.query_tokens) - 1

st.caption(
    f"**{plain(model_name)}** · {n_tokens} tokens · {len(layer_options)} layers × {len(head_options)} heads "
    f"· {STACK_LABELS[stack]}"
)
# Sections rather than tabs: Streamlit runs every tab's code, and only the shown section should compute.
# Long prompts leave Aggregates out: each recomputes the layers it reads, and rollout multiplies n × n maps
# through every layer (30 · n³ at 8,192 tokens), for an [n, n] float32 map of 268 MB.
sections = [s for s in SECTIONS if not (long_prompt and s == "Aggregates")]
from_url("view", sections[0])
if st.session_state["view"] not in sections:
    st.session_state["view"] = sections[0]
section = (
    st.segmented_control(
        "View", sections, key="view", help="Each view computes its results once per prompt (cached)."
    )
    or sections[0]
)
st.query_params["view"] = section


def url_toggle(column: DeltaGenerator, label: str, key: str, help: str) -> bool:
    """A toggle (off by default) kept in the URL as 1 or 0."""
    url_state(key, False, flag)
    on = column.toggle(label, key=key, help=help)
    to_url(key, "1" if on else "0", "0")
    return on


def heatmap_controls(prefix: str) -> tuple[str, bool, bool]:
    """Colour scale, log scale and sink hiding for the heatmaps of one view, each kept in the URL."""
    columns = st.columns(3)
    url_state(f"{prefix}_colors", COLORSCALES[0], valid=COLORSCALES.__contains__)
    colorscale = columns[0].selectbox(
        "Colour scale", COLORSCALES, key=f"{prefix}_colors", help="Heatmap colours."
    )
    to_url(f"{prefix}_colors", colorscale, COLORSCALES[0])
    log_scale = url_toggle(
        columns[1], "Log scale", f"{prefix}_log", "Colour by log10 of the weight, so small weights become visible."
    )
    hide_sink = url_toggle(
        columns[2], "Hide first token", f"{prefix}_sink",
        "The first token often soaks up most attention (an 'attention sink'); hide its column.",
    )  # fmt: skip
    return colorscale, log_scale, hide_sink


def window_from_text(text: str) -> tuple[int, int]:
    """A window written in the URL as "start-stop"."""
    start, stop = text.split("-")
    return int(start), int(stop)


def token_window(label: str, n: int, prefix: str, default: tuple[int, int]) -> tuple[int, int]:
    """A [start, stop) window over ``n`` tokens, shown as a slider (kept in the URL) only when ``n`` exceeds WINDOW."""
    if n <= WINDOW:
        return 0, n
    key = f"{prefix}_{label.split()[0].lower()}_window"
    url_state(key, default, window_from_text, valid=lambda w: 0 <= w[0] <= w[1] <= n)
    start, stop = st.slider(
        label, 0, n, key=key,
        help=f"Tokens shown one by one, with labels and hover; a window wider than {WINDOW} tokens is "
        "block-averaged so the browser stays fast.",
    )  # fmt: skip
    to_url(key, f"{start}-{stop}", f"{default[0]}-{default[1]}")
    return start, max(stop, start + 1)


def draw_map(matrix: np.ndarray, title: str, prefix: str, value_name: str = "weight") -> None:
    """A [queries, keys] map with query and key windows beyond WINDOW tokens, then the last query's row as bars."""
    colorscale, log_scale, hide_sink = heatmap_controls(prefix)
    rows, cols = matrix.shape
    windows = st.columns(2)
    with windows[0]:
        q_start, q_stop = token_window("Query window", rows, prefix, (max(0, rows - DETAIL), rows))
    with windows[1]:
        # Self-attention starts on the keys beside the queries shown; cross-attention on the first keys.
        near = min(q_stop, cols)
        k_default = (max(0, near - DETAIL), near) if rows == cols else (0, min(cols, DETAIL))
        k_start, k_stop = token_window("Key window", cols, prefix, k_default)
    if hide_sink and k_start == 0 and k_stop - k_start > 1:
        k_start = 1
    keys = view.key_tokens[k_start:k_stop]
    st.plotly_chart(
        figures.attention_heatmap(
            matrix[q_start:q_stop, k_start:k_stop], view.query_tokens[q_start:q_stop], keys, title=title,
            colorscale=colorscale, log_scale=log_scale, value_name=value_name, first_query=q_start,
            first_key=k_start,
        ),
        key=f"{prefix}_heatmap",
    )  # fmt: skip
    st.plotly_chart(
        figures.token_bar(
            matrix[last, k_start:k_stop], keys, value_name=value_name, first=k_start,
            title=f"How much the last token ({figures.safe_label(view.query_tokens[last])}) reads from each",
        ),
        key=f"{prefix}_bar",
    )  # fmt: skip


def comparison_table(comparisons: tuple[Comparison, ...]) -> pd.DataFrame:
    """The prompt's value, the corpus mean with its interval, and the percentile, one row per statistic."""
    return pd.DataFrame(
        {
            "statistic": [c.statistic for c in comparisons],
            "this prompt": [c.value for c in comparisons],
            "corpus mean": [c.mean for c in comparisons],
            "95% interval": [f"{c.low:.3f} … {c.high:.3f}" for c in comparisons],
            "percentile": [c.percentile for c in comparisons],
            "corpus prompts": [len(c.corpus) for c in comparisons],
        }
    )


def corpus_comparison() -> None:
    """Where this prompt's statistics of the chosen head fall in its distribution over a cached atlas's corpus."""
    if not url_toggle(
        st.container(), "Compare with the corpus", "corpus",
        "Where this prompt's statistics of this head fall among the head's values over the corpus of the head "
        "atlas (Heads page) cached for this model.",
    ):  # fmt: skip
        return
    if stack != loaded.main_stack:
        st.info(f"The head atlas covers {STACK_LABELS[loaded.main_stack]} only: choose it in the sidebar.")
        return
    found = cache.corpus_atlas(model_name)
    if found is None:
        st.info(
            "No head atlas of this model is cached yet. Compute one on the Heads page (a few minutes; it is then "
            "kept on disk), and come back."
        )
        st.page_link("pages/heads.py", label="Open the Heads page", query_params={"model": model_name})
        return
    with st.spinner("Measuring every head on this prompt…"):
        prompt_stats = summary.stats() if summarised else cache.statistics(prompt_key, stack)
    comparisons = compare_head(found, prompt_stats, layer, head)
    st.plotly_chart(atlas_figures.head_distributions(found, layer, head, comparisons), key="corpus_chart")
    numbers = {
        name: st.column_config.NumberColumn(name, format="%.3f") for name in ("this prompt", "corpus mean")
    }
    percentile = st.column_config.NumberColumn(
        "percentile", format="%.0f", help="Share of the corpus prompts below this prompt, in %."
    )
    st.dataframe(
        comparison_table(comparisons), hide_index=True, key="corpus_table",
        column_config=numbers | {"percentile": percentile},
    )  # fmt: skip
    st.caption(
        f"Corpus: {plain(found.corpus_name)}, {len(found.prompts)} prompts. Boxes: the head's value on each "
        f"corpus passage (cut to at most {PROMPT_TOKENS} tokens); diamond: their mean with its 95% bootstrap "
        f"interval; red line: this prompt ({n_tokens} tokens; entropy and distance grow with length). Induction "
        "and duplicate-token are measured on generated sequences, not on a prompt, so they are left out."
    )


if section == "Heads":
    with st.spinner("Drawing every head…"):
        grid = cache.summary_grid(prompt_key) if summarised else cache.grid(prompt_key, stack)
    st.plotly_chart(
        figures.head_grid_figure(grid, selected=(layer, head)), key="grid", on_select="rerun",
        selection_mode="points", config={"displayModeBar": False},
    )  # fmt: skip
    st.caption(
        f"Each thumbnail is one head (query down, key across), block-averaged to {grid.size}×{grid.size} and "
        "coloured by √(weight ÷ the head's maximum). Click a head, or pick one in the sidebar, to open it below."
    )
    draw_map(detail, f"Layer {layer}, head {head}", "head")
    corpus_comparison()

elif section == "Aggregates":
    url_state("aggregate", next(iter(AGGREGATES)), valid=AGGREGATES.__contains__)
    name = st.radio(
        "Aggregate", list(AGGREGATES), horizontal=True, key="aggregate",
        help="\n".join(f"- **{key}**: {about}" for key, about in AGGREGATES.items()),
    )  # fmt: skip
    to_url("aggregate", name, next(iter(AGGREGATES)))
    st.caption(
        AGGREGATES[name]
        + (f" Layer {layer} (sidebar)." if name in ("layer mean", "value-norm weighted") else "")
    )
    try:
        with st.spinner(f"Computing the {name}…"):
            matrix = cache.aggregate(prompt_key, stack, name, layer_index)
    except UnsupportedModelError as error:
        st.warning(str(error), icon="🧭")
    else:
        if name == "rollout" and sink_share(matrix) > SINK_NOTE:
            st.info(
                f"The first token gets {sink_share(matrix):.0%} of an average query's rollout: it is an "
                "**attention sink**. Heads with nothing to read park their weight on it, and multiplying "
                "through the layers compounds that, so every other token is left near zero (hiding its column "
                "does not change that). Choose **rollout without sink** to see how the other tokens mix.",
                icon="🕳️",
            )
        value_name = "α·‖f(x)‖" if name == "value-norm weighted" else "weight"
        draw_map(matrix, f"{name.capitalize()} ({STACK_LABELS[stack]})", "aggregate", value_name)

elif section == "Head statistics":
    with st.spinner("Measuring every head…"):
        head_stats = summary.stats() if summarised else cache.statistics(prompt_key, stack)
        if stack == stacks[0]:  # induction is measured on the model's main self-attention stack
            head_stats = replace(head_stats, induction=cache.induction(model_name))
    table = pd.DataFrame(head_stats.rows())
    measured = [s for s in STATISTICS if s in table]
    url_state("statistic", measured[0], valid=measured.__contains__)
    statistic = st.selectbox(
        "Statistic", measured, key="statistic",
        format_func=lambda s: s.replace("_", " "), help="Which statistic the layer × head map shows.",
    )  # fmt: skip
    to_url("statistic", statistic, measured[0])
    st.caption(STATISTICS[statistic])
    best = table.loc[table[statistic].idxmax()]

    def open_best() -> None:
        st.session_state["layer"], st.session_state["head"] = int(best["layer"]), int(best["head"])
        st.session_state["view"] = "Heads"

    st.button(
        f"Open the head with the highest {statistic.replace('_', ' ')}: layer {int(best['layer'])}, "
        f"head {int(best['head'])} ({best[statistic]:.3f})",
        on_click=open_best, key="open_best", help="Select this head and show it in the Heads view.",
    )  # fmt: skip
    chart, data = st.columns([1, 2])  # the table's seven columns need the wider side
    chart.plotly_chart(
        figures.layer_head_heatmap(
            getattr(head_stats, statistic), head_stats.layers, head_stats.heads,
            title=statistic.replace("_", " "), value_name=statistic.replace("_", " "),
        ),
        key="stat_map",
    )  # fmt: skip
    data.dataframe(
        table, hide_index=True, height=520, key="stat_table",
        column_config={s: st.column_config.NumberColumn(s.replace("_", " "), format="%.3f") for s in STATISTICS}
        | {axis: st.column_config.NumberColumn(axis, width=48) for axis in ("layer", "head")},
    )  # fmt: skip
    if "induction" in table:
        data.caption("Induction is measured on 50 random tokens repeated twice, not on your prompt.")
    downloads = data.columns(2)
    downloads[0].download_button(
        "Download CSV", table.to_csv(index=False), file_name=f"head_stats_{stack}.csv", mime="text/csv",
        help="Every head's statistics as CSV.",
    )  # fmt: skip
    downloads[1].download_button(
        "Download JSON", table.to_json(orient="records", indent=1), file_name=f"head_stats_{stack}.json",
        mime="application/json", help="Every head's statistics as JSON records.",
    )  # fmt: skip

else:
    options = [(la, he) for la in layer_options for he in head_options]
    url_state("ablate", [(layer, head)], heads_from_text, valid=lambda heads: set(heads) <= set(options))
    chosen = st.multiselect(
        "Heads to switch off", options, key="ablate", format_func=lambda lh: f"L{lh[0]}.H{lh[1]}",
        help=f"Zero these heads' weights ({STACK_LABELS[stack]}) and compare the next-token prediction.",
    )  # fmt: skip
    to_url("ablate", heads_text(chosen), heads_text([(layer, head)]))
    url_state("top_k", 10, int, valid=lambda k: 3 <= k <= 20)
    k = st.slider("Top-k tokens", 3, 20, key="top_k", help="How many most likely next tokens to list.")
    to_url("top_k", str(k), "10")
    by_layer: dict[int, list[int]] = {}
    for la, he in chosen:
        by_layer.setdefault(la, []).append(he)
    sites = tuple((Site(stack, la), tuple(sorted(he))) for la, he in sorted(by_layer.items()))
    try:
        with st.spinner("Running the model with and without those heads…"):
            result = cache.ablation(prompt_key, sites, k)
    except NoPredictionError as error:
        st.info(str(error), icon="ℹ️")
    else:
        before, after = st.columns(2)
        before.subheader("Intact model")
        before.dataframe(
            ablation_table(rank_changes(result.baseline, result.intervened), intact=True), hide_index=True,
            key="baseline_table", column_config=PROBABILITY_COLUMNS,
        )  # fmt: skip
        after.subheader(f"Without {len(chosen)} head(s)" if chosen else "Nothing switched off")
        after.dataframe(
            ablation_table(rank_changes(result.intervened, result.baseline, result.intact_probs), intact=False),
            hide_index=True,
            key="ablated_table", column_config=PROBABILITY_COLUMNS,
        )  # fmt: skip
