"""Sources: which passages an answer was read from, by attention and by leave-one-out ablation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import streamlit as st

from attnviz import attribution
from attnviz.agreement import agreement, faithfulness
from attnviz.demo_cases import DEMO_CASES
from attnviz.figures import attention_heatmap, highlighted_passages, passage_bar
from attnviz.passage_attention import aggregate
from attnviz.passages import MAX_UPLOAD_BYTES, PassageError, decode_upload, split_passages
from attnviz.trace import PromptError
from ui.navigation import start_page
from ui.widgets import error, get_model, model_picker, plain, run_attribution, warning
METHOD_LABELS = {
    "attention": "Attention (retrieval heads)",
    "naive": "Attention (mean of all heads)",
    "ablation": "Leave-one-out ablation",
}
AGGREGATIONS = ("Calibrated retrieval heads", "All heads", "Chosen layers", "Chosen heads")


def passage_list_input(demo: list[str]) -> list[str]:
    """Editable list of passages with add and remove buttons."""
    if "sources_list" not in st.session_state:
        st.session_state.sources_list = list(demo)
        st.session_state.sources_next = len(demo)
        st.session_state.sources_keys = list(range(len(demo)))
    for position, key in enumerate(list(st.session_state.sources_keys)):
        text_col, remove_col = st.columns([12, 1], vertical_alignment="center")
        text_col.text_area(
            f"Passage {position + 1}",
            value=st.session_state.sources_list[position],
            key=f"sources_passage_{key}",
            height=68,
        )
        if remove_col.button("✖", key=f"sources_remove_{key}", help="Remove this passage"):
            index = st.session_state.sources_keys.index(key)
            del st.session_state.sources_keys[index]
            del st.session_state.sources_list[index]
            st.rerun()
    for position, key in enumerate(st.session_state.sources_keys):
        st.session_state.sources_list[position] = st.session_state.get(f"sources_passage_{key}", "")
    if st.button("+ Add passage", help="Append an empty passage to the list"):
        st.session_state.sources_list.append("")
        st.session_state.sources_keys.append(st.session_state.sources_next)
        st.session_state.sources_next += 1
        st.rerun()
    return list(st.session_state.sources_list)


def upload_input() -> list[str]:
    """Passages from uploaded .txt/.md files, each split at blank lines."""
    files = st.file_uploader(
        "Upload .txt or .md files",
        type=["txt", "md"],
        accept_multiple_files=True,
        help=f"Each file is split into passages at blank lines; up to {MAX_UPLOAD_BYTES:,} bytes per file, UTF-8.",
    )
    passages: list[str] = []
    for file in files or []:
        try:
            passages += split_passages(decode_upload(file.name, file.getvalue()))
        except PassageError as problem:
            error(str(problem), icon="📄")
    if not files:
        st.info("Upload one or more files to use their passages.")
    return passages


start_page()
st.title("Sources")
st.caption(
    "Which passages did the model read to answer? Attention from the answer's tokens into each passage, "
    "compared with leave-one-out ablation: the drop in the answer's log-probability when a passage is removed."
)
model_name = model_picker()
methods = st.sidebar.multiselect(
    "Methods",
    list(METHOD_LABELS),
    default=list(METHOD_LABELS),
    format_func=METHOD_LABELS.get,
    help="Attention costs one forward pass; ablation one pass per passage (the faithful reference).",
)
max_new_tokens = st.sidebar.slider(
    "Longest answer (tokens)", 4, 64, attribution.DEFAULT_MAX_NEW_TOKENS, help="Greedy generation stops here."
)

demo = DEMO_CASES[0]
question = st.text_input("Question", value=demo.question, help="Asked about the passages below.")
mode = st.radio(
    "Passages",
    ("List", "Paste", "Upload"),
    horizontal=True,
    help="Edit a list, paste one text split at blank lines, or upload .txt/.md files.",
)
if mode == "List":
    passages = passage_list_input(list(demo.passages))
elif mode == "Paste":
    pasted = st.text_area(
        "Passages separated by blank lines",
        value="\n\n".join(demo.passages),
        height=200,
        help="Every blank line starts a new passage.",
    )
    passages = split_passages(pasted)
else:
    passages = upload_input()

if not methods:
    st.warning("Choose at least one method in the sidebar.", icon="✏️")
    st.stop()
loaded = get_model(model_name)
if loaded is None:
    st.stop()
result = run_attribution(model_name, question, passages, tuple(methods), max_new_tokens)
if result is None:
    st.stop()

st.subheader("Answer")
st.text(result.answer)
p_count = len(result.passages)

matrices = dict(result.scores)
labels = dict(METHOD_LABELS)
if "attention" in matrices:
    st.subheader("Attention aggregation")
    agg_cols = st.columns([2, 2, 1, 1])
    aggregation = agg_cols[0].selectbox(
        "Heads",
        AGGREGATIONS,
        help="Calibrated heads were chosen on synthetic cases by how often their attention, while the answer is "
        "written, lands on the passage holding it; the other choices are for exploring.",
    )
    n_layers, n_heads = result.attention.mass.shape[:2]
    chosen_layers: list[int] | None = None
    chosen_heads: list[tuple[int, int]] | None = None
    if aggregation == "Calibrated retrieval heads":
        chosen_heads = list(result.heads)
        agg_cols[1].caption("Heads: " + ", ".join(f"L{layer} H{head}" for layer, head in result.heads))
    elif aggregation == "Chosen layers":
        chosen_layers = agg_cols[1].multiselect(
            "Layers",
            list(range(n_layers)),
            default=list(range(n_layers // 2, n_layers)),
            help="Mean over these.",
        )
    elif aggregation == "Chosen heads":
        options = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
        chosen_heads = agg_cols[1].multiselect(
            "Heads (layer, head)",
            options,
            default=list(result.heads[:4]),
            format_func=lambda lh: f"L{lh[0]} H{lh[1]}",
            help="Mean over these heads.",
        )
    value_weighted = agg_cols[2].checkbox(
        "Value-norm weighted", help="Weight each key by its value vector's norm."
    )
    exclude_sink = agg_cols[3].checkbox(
        "Exclude sink", value=True, help="Renormalise each head by the weight left after the first token."
    )
    try:
        matrices["attention"] = aggregate(
            result.attention,
            heads=chosen_heads,
            layers=chosen_layers,
            value_weighted=value_weighted,
            exclude_sink=exclude_sink,
            shares=aggregation == "Calibrated retrieval heads",
        )
    except PromptError as problem:
        warning(str(problem))
        st.stop()
    labels["attention"] = f"Attention ({aggregation.lower()})"


def passage_scores(method: str, rows: slice) -> np.ndarray:
    """Per-passage scores of ``method`` (with the page's aggregation) over the chosen answer tokens."""
    return attribution.passage_scores(matrices[method][rows], method)


token_options = ["Whole answer", *[f"{i}: {t}" for i, t in enumerate(result.answer_tokens)]]
focus = st.select_slider(
    "Answer token", token_options, value="Whole answer", help="Highlight passages for one answer token."
)
rows = (
    slice(None)
    if focus == "Whole answer"
    else slice(token_options.index(focus) - 1, token_options.index(focus))
)

shown = [m for m in ("attention", "naive", "ablation") if m in matrices]
st.subheader("Sources")
primary = "ablation" if "ablation" in matrices else shown[0]  # the faithful reference when present
ranked = attribution.ranking(passage_scores(primary, rows))
st.caption(f"Ranked by {labels[primary].lower()}.")
citations = pd.DataFrame(
    [
        {
            "rank": rank + 1,
            "passage": f"[{index + 1}]",
            **{labels[m]: round(float(passage_scores(m, rows)[index]), 4) for m in shown},
            "text": result.passages[index],
        }
        for rank, index in enumerate(ranked)
    ]
)
st.dataframe(citations, hide_index=True, width="stretch")

st.subheader("Passages by method")
columns = st.columns(len(shown))
colours = {"attention": "31, 119, 180", "naive": "127, 127, 127", "ablation": "214, 39, 40"}
for column, method in zip(columns, shown, strict=True):
    with column:
        st.markdown(f"**{plain(labels[method])}**")
        scores = passage_scores(method, rows)
        st.markdown(highlighted_passages(result.passages, scores, colours[method]), unsafe_allow_html=True)
        value_name = "log-prob drop" if method == "ablation" else "attention"
        st.plotly_chart(passage_bar(scores, value_name), key=f"bar_{method}")
        st.plotly_chart(
            attention_heatmap(
                matrices[method],
                result.answer_tokens,
                [f"[{i + 1}]" for i in range(p_count)],
                title="answer tokens × passages",
                value_name=value_name,
                colorscale="Reds" if method == "ablation" else "Blues",
            )
            .update_layout(height=260 + 14 * len(result.answer_tokens))
            .update_xaxes(title="passage")
            .update_yaxes(title="answer token"),
            key=f"heatmap_{method}",
        )

st.subheader("Agreement and faithfulness")
if "ablation" in matrices and "attention" in matrices:
    drops = passage_scores("ablation", slice(None))
    attention_scores = passage_scores("attention", slice(None))
    agree = agreement(attention_scores, drops)
    faith = faithfulness(attention_scores, drops)
    cols = st.columns(4)
    cols[0].metric(
        "Spearman (attention vs ablation)", f"{agree.spearman:+.2f}", help="Rank correlation over passages."
    )
    cols[1].metric(
        "Top-1 match", "yes" if agree.top1_match else "no", help="Same top passage in both methods?"
    )
    cols[2].metric(
        f"Drop without top passage [{faith.top_passage + 1}]",
        f"{faith.top_drop:.2f} nats",
        help="Fall of the answer's total log-probability when the top attention-attributed passage is removed.",
    )
    cols[3].metric(
        f"Drop without random passage [{faith.random_passage + 1}]",
        f"{faith.random_drop:.2f} nats",
        help=f"A seeded random other passage; mean over all others: {faith.mean_other_drop:.2f} nats.",
    )
else:
    st.info("Select both an attention method and ablation to see agreement and faithfulness.")

st.subheader("Export")
export = attribution.export_json(result)
download = st.columns(2)
download[0].download_button(
    "Download JSON",
    json.dumps(export, indent=2),
    "sources.json",
    "application/json",
    help="Answer and all scores.",
)
download[1].download_button(
    "Download CSV",
    pd.DataFrame(attribution.export_rows(result)).to_csv(index=False),
    "sources.csv",
    "text/csv",
    help="One row per answer token and passage.",
)
st.caption(
    f"Times: generation {result.seconds.get('generate', 0):.1f} s, attention pass "
    f"{result.seconds.get('attention', 0):.1f} s"
    + (f", ablation {result.seconds['ablation']:.1f} s" if "ablation" in result.seconds else "")
    + f". Calibrated heads: {', '.join(f'L{layer}H{head}' for layer, head in result.heads) or '—'}."
)
