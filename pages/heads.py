"""Heads: what every head does across a corpus (the head atlas): roles, distributions, examples, ablation."""

from __future__ import annotations

from ui.startup import import_library

import_library()  # first: the library is never imported beside the server's preload thread (ui.startup.IMPORTS)

import json

import pandas as pd
import streamlit as st

from attnviz.heads import examples
from attnviz.heads.atlas import DEFAULT_PROMPTS, STATISTICS, Atlas, AtlasCancelled, atlas, atlas_path, load_atlas
from attnviz.heads.corpus import Corpus, CorpusError, decode_corpus, shipped_corpus
from attnviz.heads.roles import ROLES, TOP_K, RetrievalInputs
from attnviz.models.loading import LoadedModel
from attnviz.sources.calibration import atlas_retrieval
from attnviz.tracing.batching import Turns
from attnviz.tracing.inputs import PromptError
from attnviz.views import atlas_figures, figures
from ui import cache
from ui.navigation import start_page
from ui.widgets import get_model, model_picker, plain, warning

WINDOW = 48  # query rows of an example map shown around the peak


def corpus_choice() -> Corpus | None:
    """The shipped corpus or the user's uploaded .txt/.jsonl (None after a readable warning)."""
    source = st.sidebar.radio(
        "Corpus", ["Shipped passages", "My file"], key="atlas_corpus",
        help="The shipped corpus is 305 passages in 24 genres, original or public-domain (each with its source). "
        'Your file: .txt with passages separated by blank lines, or .jsonl with {"text": ...} per line. Generated '
        "sequences are always added.",
    )  # fmt: skip
    if source == "Shipped passages":
        return shipped_corpus()
    upload = st.sidebar.file_uploader("Corpus file", type=["txt", "jsonl"], key="atlas_upload")
    if upload is None:
        st.info("Choose a .txt or .jsonl corpus file in the sidebar.")
        return None
    try:
        return decode_corpus(upload.name, upload.getvalue())
    except CorpusError as problem:
        warning(str(problem))
        return None


def compute(loaded: LoadedModel, corpus: Corpus, prompts: int, retrieval: RetrievalInputs | None, turns: Turns) -> Atlas | None:
    """Build the atlas in this model's turn with a progress bar; Stop (or any click) cancels it."""
    with st.status("Building the head atlas…", expanded=True) as status:
        bar = st.progress(0.0, text="Waiting for the model")

        def queued(ahead: int) -> None:
            bar.progress(0.0, text=f"Queued: {ahead} long job(s) ahead of yours on this shared model")

        try:
            with turns.turn(queued):
                result = atlas(
                    loaded, corpus, prompts=prompts, retrieval=retrieval,
                    progress=lambda done, what: bar.progress(min(1.0, done), text=what),
                )  # fmt: skip
        except (PromptError, AtlasCancelled) as problem:
            status.update(label="No atlas", state="error")
            warning(str(problem))
            return None
        status.update(label="Atlas ready (cached on disk for this model and corpus)", state="complete", expanded=False)
    return result


def role_table() -> pd.DataFrame:
    return pd.DataFrame(
        {"role": [r.name for r in ROLES], "threshold": [r.rule() for r in ROLES],
         "definition": [r.definition for r in ROLES]}
    )  # fmt: skip


def ablation_table(result: Atlas, role: str) -> pd.DataFrame | None:
    check = result.checks.get(role)
    if check is None or not check.metrics:
        return None
    return pd.DataFrame(
        {
            "metric": [m.metric for m in check.metrics],
            "intact": [m.baseline for m in check.metrics],
            f"top {len(check.heads)} ablated": [m.ablated for m in check.metrics],
            "random same-layer heads ablated": [m.control for m in check.metrics],
            "effect (ablated − control), 95%": [f"{m.effect_low:+.3f} … {m.effect_high:+.3f}" for m in check.metrics],
            "verdict": ["measurable effect" if m.measurable else "no measurable effect" for m in check.metrics],
            "cases": [m.cases for m in check.metrics],
        }
    )


def show_example(loaded: LoadedModel, result: Atlas, layer: int, head: int, role: str) -> None:
    """The corpus prompts where the head's role statistic is strongest, the best one drawn as Explore draws a head."""
    statistic, above = examples.role_statistic(role)
    best = examples.strongest_prompts(result, layer, head, statistic, above)
    if not best:
        st.caption("No prompt measures this statistic.")
        return
    li, hi, si = result.layers.index(layer), result.heads.index(head), result.statistics.index(statistic)
    st.dataframe(
        pd.DataFrame({"prompt": [result.prompts[i].label for i in best],
                      statistic: [result.values[i, li, hi, si] for i in best]}),
        hide_index=True,
    )  # fmt: skip
    chosen = st.selectbox("Draw prompt", range(len(best)), format_func=lambda i: f"#{i + 1}", key="atlas_example")
    prompt = result.prompts[best[chosen]]
    with st.spinner(f"Recording layer {layer}, head {head} on that prompt…"):
        weights, tokens = examples.head_map(loaded, prompt, layer, head)
    scores = examples.row_scores(weights, prompt, statistic, causal=loaded.kind == "decoder")
    peak = examples.peak_row(scores, above)
    start = max(0, min(peak - WINDOW // 2, len(tokens) - WINDOW))
    rows = slice(start, start + WINDOW)
    st.plotly_chart(
        figures.attention_heatmap(weights[rows, rows], tokens[rows], tokens[rows], first_query=start, first_key=start,
                                  title=f"Layer {layer}, head {head}: tokens {start}–{min(start + WINDOW, len(tokens)) - 1}"),
        key="atlas_map",
    )  # fmt: skip
    st.plotly_chart(
        figures.token_bar(weights[peak, : peak + 1] if loaded.kind == "decoder" else weights[peak], tokens[: peak + 1]
                          if loaded.kind == "decoder" else tokens,
                          title=f"Query {peak} ({figures.safe_label(tokens[peak])}), where {statistic} peaks: "
                          f"{scores[peak]:.3f}"),
        key="atlas_bar",
    )  # fmt: skip


start_page()
st.title("Heads")
st.caption(
    "What each head does across a corpus, not on one prompt: statistics as means with 95% bootstrap intervals over "
    "prompts, roles by stated thresholds, and each role checked by ablating its strongest heads against random "
    "heads of the same layers."
)
model_name = model_picker()
loaded = get_model(model_name)
if loaded is None:
    st.stop()
corpus = corpus_choice()
if corpus is None:
    st.stop()
prompts = int(st.sidebar.number_input(
    "Natural passages", 4, 300, DEFAULT_PROMPTS, step=4, key="atlas_prompts",
    help="More passages: narrower intervals, longer run (the default 200: 130 s for SmolLM2-135M, 9 s for MiniLM on "
    "2 CPU cores, ablation checks included). Generated sequences (1 per 6 passages, 4 to 24 of each kind) are added.",
))  # fmt: skip
retrieval = atlas_retrieval(loaded) if loaded.info.has_chat_template else None
with st.expander("Roles: definitions and thresholds", expanded=False):
    st.dataframe(role_table(), hide_index=True)
    st.caption(
        "A head holds a role when its mean statistic over the corpus passes the threshold; it may hold several or "
        "none. Statistics: " + " ".join(f"**{name}**: {about}" for name, about in STATISTICS.items())
    )
    if retrieval is None:
        st.caption("Retrieval stays empty: this model has no cached Sources calibration (run `python -m attnviz prepare`).")

path = atlas_path(loaded, corpus, prompts, retrieval)
key = str(path)
if st.session_state.get("atlas_key") != key:
    st.session_state.pop("atlas_result", None)
    if path.exists():
        st.session_state.atlas_result, st.session_state.atlas_key = load_atlas(path), key
if "atlas_result" not in st.session_state:
    intro = st.empty()
    with intro.container():
        st.info(f"Press **Compute atlas**: {prompts} passages plus generated sequences, then the ablation checks.",
                icon="👆")  # fmt: skip
        pressed = st.button("Compute atlas", type="primary", help="Press Stop (top right) to cancel.")
    if not pressed:
        st.stop()
    intro.empty()
    result = compute(loaded, corpus, prompts, retrieval, cache.served(model_name).turns)
    if result is None:
        st.stop()
    st.session_state.atlas_result, st.session_state.atlas_key = result, key
result: Atlas = st.session_state.atlas_result

st.caption(
    f"**{plain(model_name)}** · corpus {plain(result.corpus_name)} · {len(result.prompts)} prompts · "
    f"{result.n_tokens} tokens · {len(result.layers)} layers × {len(result.heads)} heads"
)
clicked = st.session_state.get("atlas_grid")
points = clicked.get("selection", {}).get("points", []) if clicked else []
if points and points != st.session_state.get("atlas_grid_applied"):
    st.session_state["atlas_grid_applied"] = points
    st.session_state["atlas_layer"], st.session_state["atlas_head"] = (int(v) for v in points[0]["customdata"][:2])
left, right = st.sidebar.columns(2)
layer = left.selectbox("Layer", result.layers, key="atlas_layer", help="Layer of the head shown below.")
head = right.selectbox("Head", result.heads, key="atlas_head", help="Head shown below (or click one in the grid).")
st.plotly_chart(
    atlas_figures.role_grid_figure(result, selected=(layer, head)), key="atlas_grid", on_select="rerun",
    selection_mode="points", config={"displayModeBar": False},
)  # fmt: skip
st.download_button(
    "Download atlas (JSON)", json.dumps(result.export(), indent=1), file_name="atlas.json", mime="application/json",
    help="Model, corpus, every head's statistics with intervals and roles, and each role's ablation check.",
)  # fmt: skip

held = result.head_roles(layer, head)
st.subheader(f"Layer {layer}, head {head}")
st.write("Roles: " + (", ".join(held) if held else "none"))
st.plotly_chart(atlas_figures.head_distributions(result, layer, head), key="atlas_distributions")
st.caption("Each box is the head's statistic over the prompts that measure it; the diamond is the mean with its 95% "
           "bootstrap interval.")  # fmt: skip
role = st.selectbox(
    "Role to show", held or [r.name for r in ROLES], key="atlas_role",
    help="Examples and ablation of this role (the head's own roles first).",
)  # fmt: skip
examples_tab, ablation_tab = st.tabs(["Where it shows most", "Ablation check"])
with examples_tab:
    show_example(loaded, result, layer, head, role)
with ablation_tab:
    table = ablation_table(result, role)
    check = result.checks.get(role)
    if table is None:
        st.caption(check.note if check is not None and check.note else "No head holds this role, so nothing was ablated.")
    else:
        st.caption(f"Ablated: the role's top {TOP_K} heads " + ", ".join(f"L{a} H{b}" for a, b in check.heads)
                   + ". Control: as many random heads of the same layers without the role, drawn per case.")  # fmt: skip
        st.dataframe(table, hide_index=True)
