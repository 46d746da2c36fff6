"""Sources: which passages or sentences an answer was read from, by attention and by ablation."""

from __future__ import annotations

from ui.startup import import_library

import_library()  # first: the library is never imported beside the server's preload thread (ui.startup.IMPORTS)

import contextlib
import json
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from attnviz.models.loading import LoadedModel
from attnviz.sources import attribution
from attnviz.sources.ablation import ablation_kind, planned_passes
from attnviz.sources.agreement import agreement, faithfulness
from attnviz.sources.answers import Answered, AnswerQueue, AnswerRequest
from attnviz.sources.attention import aggregate
from attnviz.sources.attribution import Attribution
from attnviz.sources.calibration import calibration, is_calibrated
from attnviz.sources.figures import highlighted_sources, highlighted_tokens, source_bar
from attnviz.tracing.batching import Turns
from attnviz.tracing.inputs import PromptError
from attnviz.views.figures import attention_heatmap
from ui import cache
from ui.navigation import start_page
from ui.sources_form import METHOD_LABELS, Request, recalibrate_allowed, sources_form
from ui.widgets import get_model, model_picker, plain, warning

AGGREGATIONS = ("Calibrated retrieval heads", "All heads", "Chosen layers", "Chosen heads")
COLOURS = {"attention": "31, 119, 180", "naive": "127, 127, 127", "ablation": "214, 39, 40"}
TOP_PASSAGES = 3


def in_words(drop: float) -> str:
    """A log-probability drop as words: removing the source makes the answer less (or more) likely."""
    return f"{abs(drop):.2f} nats less likely" if drop >= 0 else f"{abs(drop):.2f} nats more likely"


def nats_and_direction(drop: float) -> tuple[str, str]:
    """A drop as a metric's short value and its direction below it (a long value is cut off in a column)."""
    return f"{abs(drop):.2f} nats", "answer less likely" if drop >= 0 else "answer more likely"


def queued_answers(queue: AnswerQueue, bar) -> Callable[[AnswerRequest], Answered]:  # noqa: ANN001
    """Computes an answer in the model's answer queue (generated in one batch with the answers of sessions
    asking at the same moment), saying on ``bar`` (an st.progress) how many are ahead of it."""

    def wait(request: AnswerRequest) -> Answered:
        future, shown = queue.submit(request), ""
        while True:
            try:
                return future.result(timeout=0.3)
            except TimeoutError:
                ahead = queue.ahead_of(future)
                text = (
                    f"Queued: {ahead} answer(s) ahead of yours on this shared model"
                    if ahead
                    else "Answering (together with the questions asked at the same moment)"
                )
                if text != shown:  # an unchanged progress bar sent again still redraws the page
                    bar.progress(0.5, text=text)
                    shown = text

    return wait


def told_on(bar) -> tuple[Callable[[int], None], Callable[[float, str], None]]:  # noqa: ANN001 - an st.progress
    """Callbacks that draw on ``bar``: a place in the model's turns, and a long job's progress."""

    def queued(ahead: int) -> None:
        bar.progress(0.0, text=f"Queued: {ahead} long job(s) ahead of yours on this shared model")

    def progress(done: float, what: str) -> None:
        bar.progress(min(1.0, done), text=what)

    return queued, progress


def run(request: Request, loaded: LoadedModel, served: cache.ServedModel) -> Attribution | None:
    """The answer and its attention attribution, batched with other sessions' answers; bad input: a warning.

    Ablation is left for later (:func:`check_by_ablation`), unless it is the only method asked for. A
    request another session already ran (the same demo for a whole class) reuses its result.
    """
    shared = cache.attributions()
    first = tuple(m for m in request.methods if m != "ablation") or request.methods
    with st.status("Answering and attributing…", expanded=True) as status:
        bar = st.progress(0.0, text="Checking the prompt")
        queued, progress = told_on(bar)
        try:
            result = shared.get(request)
            if result is None:
                if "attention" in first and not is_calibrated(loaded):
                    with served.turns.turn(queued):  # once per model, then from disk
                        calibration(loaded, progress=progress)
                # Ablation alone has no attention result to show first: it runs at once, in its turn.
                with served.turns.turn(queued) if "ablation" in first else contextlib.nullcontext():
                    result = attribution.attribute(
                        loaded, request.question, list(request.passages), first,
                        max_new_tokens=request.max_new_tokens, answer=request.answer,
                        granularity=request.granularity, passes=request.passes, progress=progress,
                        answers=queued_answers(served.answers, bar),
                    )  # fmt: skip
                shared.put(request, result)
        except PromptError as problem:
            bar.empty()
            status.update(label="Nothing to attribute", state="error", expanded=False)
            refused = str(problem)
        else:
            status.update(label=f"Done in {sum(result.seconds.values()):.1f} s", state="complete", expanded=False)
            return result
    warning(refused)  # below the collapsed status, where it is read at once
    return None


def check_by_ablation(
    request: Request, result: Attribution, loaded: LoadedModel, turns: Turns
) -> Attribution:
    """``result`` checked by ablation in this model's turn (a progress bar says which pass runs), shared with
    every session that asks the same."""
    shared = cache.attributions()
    with st.status("Checking by ablation…", expanded=True) as status:
        bar = st.progress(0.0, text="Waiting for the model")
        queued, progress = told_on(bar)
        known = shared.get(request)
        if known is not None and known.ablation is not None:
            checked = known
        else:
            with turns.turn(queued):
                checked = attribution.check_by_ablation(
                    loaded, result, passes=request.passes, progress=progress
                )
            shared.put(request, checked)
        done = f"Ablation done in {checked.seconds['ablation']:.1f} s"
        status.update(label=done, state="complete", expanded=False)
    st.session_state.sources_result = (request.model, request, checked)
    return checked


def ablation_budget(request: Request, result: Attribution) -> str:
    """How many forward passes ablation will take, and of which kind (said before it runs)."""
    n_sources = len(result.sources)
    how = {"leave-one-out": "leave-one-out", "subsets": "random subsets"}[ablation_kind(n_sources)]
    return f"{planned_passes(n_sources, request.passes)} forward passes, {how}"


def attention_label(aggregation: str, value_weighted: bool, exclude_sink: bool) -> str:
    """The attention column's name, saying how it was aggregated (so two attention columns never look alike)."""
    how = [aggregation.lower()]
    if value_weighted:
        how.append("value-weighted")
    if exclude_sink and aggregation != AGGREGATIONS[0]:  # calibrated heads use shares: the sink cancels out
        how.append("without sink")
    return f"Attention ({', '.join(how)})"


def aggregation_settings(
    aggregation: str,
    heads: list[tuple[int, int]] | None,
    layers: list[int] | None,
    value_weighted: bool,
    exclude_sink: bool,
) -> dict[str, object]:
    """How the attention scores shown were aggregated, exported with them (lists as text: one CSV cell each)."""
    if heads is not None:
        over = ", ".join(f"L{layer} H{head}" for layer, head in heads)
    else:
        over = "every head" if layers is None else "layers " + ", ".join(str(layer) for layer in layers)
    return {
        "attention_aggregation": aggregation,
        "attention_over": over,
        "attention_value_weighted": value_weighted,
        "attention_exclude_sink": exclude_sink,
        "attention_shares": aggregation == AGGREGATIONS[0],
    }


def recalibrate_panel(loaded: LoadedModel, result: Attribution) -> None:
    """How the retrieval heads were chosen, their held-out accuracy, and a button to choose them again."""
    with st.expander("Retrieval heads: how they were chosen", expanded=False):
        if result.calibration is None:
            st.caption("This run did not use calibrated heads.")
        else:
            st.write(result.calibration.describe())
            st.caption("Heads, best first: " + ", ".join(f"L{layer} H{head}" for layer, head in result.heads))
            cols = st.columns(2)
            cols[0].metric("Held-out accuracy", f"{result.calibration.held_out_accuracy:.0%}",
                           help="On synthetic cases never used to choose the heads.")  # fmt: skip
            cols[1].metric("Accuracy on the choosing cases", f"{result.calibration.choice_accuracy:.0%}",
                           help="In-sample: the cases the heads were chosen on (optimistic).")  # fmt: skip
        if not recalibrate_allowed():
            st.caption("The server's operator chooses the heads again: `python -m attnviz prepare --recalibrate`.")
        elif st.button(
            "Recalibrate", help="Choose this model's heads again on the synthetic cases (one pass per case)."
        ):
            bar = st.progress(0.0, text="Finding retrieval heads")
            calibration(
                loaded, progress=lambda done, what: bar.progress(min(1.0, done), text=what), refresh=True
            )
            cache.attributions().clear()  # results of the old heads must not be reused
            st.success("Heads chosen again. Press Answer to use them.")


start_page()
st.title("Sources")
st.caption(
    "Which passages, or which sentences, did the model read to answer? Attention from the answer's tokens into "
    "each source, compared with ablation: how much less likely the answer becomes when a source is removed."
)
model_name = model_picker()
loaded = get_model(model_name)  # now, so a bad model name is reported before anything is typed
if loaded is None:
    st.stop()
submitted, request = sources_form(model_name)
if request is not None:
    answered = run(request, loaded, cache.served(model_name))
    st.session_state.sources_result = (model_name, request, answered)
    # Asked for with the answer: ablation runs once the attention result is drawn (end of this page).
    st.session_state.sources_ablate_next = answered is not None and "ablation" in request.methods
elif submitted:
    st.session_state.pop("sources_result", None)  # the form said what is wrong; no stale result below it
shown_model, asked, result = st.session_state.get("sources_result", (model_name, None, None))
if result is None:
    if not submitted:
        st.info("Edit the question and passages, then press **Answer**. Nothing runs before that.", icon="👆")
    st.stop()
if shown_model != model_name:
    st.info("The model changed: press **Answer** to run the question with it.", icon="👆")
    st.stop()

st.subheader("Answer")
st.text(result.answer)
if result.ablation is None and st.button(
    "Check by ablation",
    help=f"Remove each source and score the answer again ({ablation_budget(asked, result)}): how much less "
    "likely the answer becomes without it, the faithful check of the attention shown.",
):  # fmt: skip
    check_by_ablation(asked, result, loaded, cache.served(model_name).turns)
    st.rerun()  # drawn again with ablation, and without the button
total = float(result.logprobs.sum())
if result.answer_origin == "pasted":
    st.caption(
        f"Pasted answer: the model did not write it; it is scored by teacher forcing. Its log-probability under "
        f"the model is {total:.2f} nats ({total / len(result.logprobs):.2f} per token): the lower, the more the "
        "answer surprised the model."
    )
else:
    st.caption(
        f"Generated greedily by the model; log-probability {total:.2f} nats over {len(result.logprobs)} tokens."
    )

matrices = dict(result.scores)
labels = dict(METHOD_LABELS) | {"naive": "Baseline (raw mean of all heads)"}
settings: dict[str, object] = {}
if "attention" in matrices:
    st.subheader("Attention aggregation")
    agg_cols = st.columns([3, 4, 2, 2])
    aggregation = agg_cols[0].selectbox(
        "Heads", AGGREGATIONS,
        help="Calibrated heads were chosen on synthetic cases by how often their attention, while the answer is "
        "written, lands on the passage holding it; the other choices are for exploring.",
    )  # fmt: skip
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
        chosen_heads = agg_cols[1].multiselect(
            "Heads (layer, head)", [(layer, head) for layer in range(n_layers) for head in range(n_heads)],
            default=list(result.heads[:4]), format_func=lambda lh: f"L{lh[0]} H{lh[1]}", help="Mean over these heads.",
        )  # fmt: skip
    value_weighted = agg_cols[2].checkbox(
        "Value-weighted", help="Weight each key by its value vector's norm (Kobayashi et al. 2020)."
    )
    exclude_sink = agg_cols[3].checkbox(
        "Exclude sink", value=True, help="Renormalise each head by the weight left after the first token."
    )
    try:
        matrices["attention"] = aggregate(
            result.attention, heads=chosen_heads, layers=chosen_layers, value_weighted=value_weighted,
            exclude_sink=exclude_sink, shares=aggregation == "Calibrated retrieval heads",
        )  # fmt: skip
    except PromptError as problem:
        warning(str(problem))
        st.stop()
    labels["attention"] = attention_label(aggregation, value_weighted, exclude_sink)
    settings = aggregation_settings(aggregation, chosen_heads, chosen_layers, value_weighted, exclude_sink)
    if "naive" in matrices:
        st.caption(
            "The baseline column averages every head's raw attention, sink included; the attention column uses "
            "the heads and options chosen here, so the two differ."
        )

token_options = ["Whole answer", *[f"{i}: {t}" for i, t in enumerate(result.answer_tokens)]]
focus = st.select_slider(
    "Answer token", token_options, value="Whole answer", help="Sources for one answer token."
)
rows = (
    slice(None)
    if focus == "Whole answer"
    else slice(token_options.index(focus) - 1, token_options.index(focus))
)
shown = [m for m in ("attention", "naive", "ablation") if m in matrices]
scores = {m: attribution.passage_scores(matrices[m][rows], m) for m in shown}
source_labels = result.labels
unit = "sentences" if result.granularity == "sentence" else "passages"

st.subheader("Sources")
primary = "ablation" if "ablation" in matrices else shown[0]  # the faithful reference when present
st.caption(
    f"{len(result.sources)} {unit}, ranked by {labels[primary].lower()}. Ablation is the answer's log-probability "
    "lost without the source: positive = the answer is less likely without it (it supports the answer); "
    "negative = more likely without it."
)
table = pd.DataFrame(
    [
        {
            "rank": rank + 1,
            "source": source_labels[index],
            **{labels[m]: round(float(scores[m][index]), 4) for m in shown},
            "text": result.source_text(int(index)),
        }
        for rank, index in enumerate(attribution.ranking(scores[primary]))
    ]
)
st.dataframe(table, hide_index=True, width="stretch")

st.subheader(f"{unit.capitalize()} by method")
for column, method in zip(st.columns(len(shown)), shown, strict=True):
    with column:
        st.markdown(f"**{plain(labels[method])}**")
        st.markdown(
            highlighted_sources(
                result.passages, result.sources, scores[method], COLOURS[method], source_labels
            ),
            unsafe_allow_html=True,  # every passage character escaped by attnviz.sources.figures.html_text
        )
        value_name = "log-prob lost without it" if method == "ablation" else "attention share"
        st.plotly_chart(source_bar(scores[method], source_labels, value_name), key=f"bar_{method}")
        st.plotly_chart(
            attention_heatmap(
                matrices[method], result.answer_tokens, source_labels, title="answer tokens × sources",
                value_name=value_name, colorscale="Blues", diverging=method == "ablation",
            )
            .update_layout(height=260 + 14 * len(result.answer_tokens))
            .update_xaxes(title="source")
            .update_yaxes(title="answer token"),
            key=f"heatmap_{method}",
        )  # fmt: skip

if result.attention.tokens is not None:
    st.subheader("Token by token, inside the top passages")
    st.caption(
        "Attention of the calibrated retrieval heads on every token of the passages they attend to most."
    )
    token_scores = result.attention.tokens[rows].mean(axis=0)
    passage_totals = [
        sum(token_scores[t] for t, _, _ in result.prompt.passage_tokens(p))
        for p in range(len(result.passages))
    ]
    for passage in np.argsort(passage_totals)[::-1][:TOP_PASSAGES]:
        spans = [(s, e, float(token_scores[t])) for t, s, e in result.prompt.passage_tokens(int(passage))]
        header = f"[{passage + 1}] share {passage_totals[passage]:.2f}"
        st.markdown(
            highlighted_tokens(result.passages[passage], spans, COLOURS["attention"], header),
            unsafe_allow_html=True,
        )

st.subheader("Agreement and faithfulness")
if "ablation" in matrices and "attention" in matrices:
    drops, attention_scores = scores["ablation"], scores["attention"]
    agree, faith = agreement(attention_scores, drops), faithfulness(attention_scores, drops)
    cols = st.columns(4)
    cols[0].metric(
        "Spearman (attention vs ablation)", f"{agree.spearman:+.2f}", help="Rank correlation over sources."
    )
    cols[1].metric(
        "Top-1 match", "yes" if agree.top1_match else "no", help="Same top source in both methods?"
    )
    cols[2].metric(
        f"Without top source {source_labels[faith.top_passage]}", *nats_and_direction(faith.top_drop),
        delta_color="off", delta_arrow="off",
        help="The answer's log-probability when the top attention source is removed, compared with all present. "
        "A faithful attention ranking makes this large and positive.",
    )  # fmt: skip
    cols[3].metric(
        f"Without random source {source_labels[faith.random_passage]}",
        *nats_and_direction(faith.random_drop),
        delta_color="off",
        delta_arrow="off",
        help=f"A seeded random other source; on average the others make it {in_words(faith.mean_other_drop)}.",
    )
    if result.ablation is not None and result.ablation.kind == "subsets":
        st.caption("Subset ablation estimates each source's effect, so these are estimates too.")
elif "attention" in matrices and result.ablation is None:
    st.info(
        f"Press **Check by ablation** under the answer to compare this attention with ablation "
        f"({ablation_budget(asked, result)}).",
        icon="👆",
    )
else:
    st.info("Select both the retrieval-head attention and ablation to compare them.")

recalibrate_panel(loaded, result)

st.subheader("Export")
shown_result = replace(result, scores={m: matrices[m] for m in shown})  # the scores on screen
download = st.columns(2)
download[0].download_button(
    "Download JSON",
    json.dumps(attribution.export_json(shown_result, settings | {"answer_token": focus}, rows), indent=2),
    "sources.json", "application/json",
    help="What this page shows: answer, sources, scores (for the answer token chosen), the aggregation "
    "settings and the calibration.",
)  # fmt: skip
download[1].download_button(
    "Download CSV", pd.DataFrame(attribution.export_rows(shown_result, settings)).to_csv(index=False),
    "sources.csv", "text/csv", help="One row per answer token and source, with the aggregation settings.",
)  # fmt: skip
times = f"Times: answer {result.seconds.get('generate', 0):.1f} s, attention pass {result.seconds.get('attention', 0):.1f} s"
if result.ablation is not None:
    how = "leave-one-out" if result.ablation.kind == "leave-one-out" else "random subsets + linear fit"
    times += f", ablation {result.seconds['ablation']:.1f} s ({result.ablation.passes} forward passes, {how})"
st.caption(times + ".")

if st.session_state.pop("sources_ablate_next", False) and result.ablation is None:
    # Asked for with the answer: runs now that the attention result is on screen, then both are shown.
    check_by_ablation(asked, result, loaded, cache.served(model_name).turns)
    st.rerun()
