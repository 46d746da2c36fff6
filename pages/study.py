"""Study: which passages a model's answers draw on over many questions, where position matters, what a rewrite changes."""

from __future__ import annotations

from ui.startup import import_library

import_library()  # first: the library is never imported beside the server's preload thread (ui.startup.IMPORTS)

import json

import pandas as pd
import streamlit as st

from attnviz.models.loading import LoadedModel
from attnviz.sources.study import MEASURES, Comparison, Study, StudyResult, compare, run_study, with_passage
from attnviz.sources.study_figures import paired_figure, passage_share_figure, position_figure
from attnviz.sources.study_io import export_json, export_rows
from attnviz.sources.study_stats import describe_change
from attnviz.tracing.inputs import PromptError
from ui import cache
from ui.navigation import start_page
from ui.study_form import StudyRequest, study_form
from ui.widgets import get_model, model_picker, warning

FRAMING = (
    "What this shows: attention-based evidence in this model (the calibrated retrieval heads' share of attention "
    "on each passage while the answer is written), checked by ablation where you run it. It is evidence about this "
    "model on these questions, with intervals over the questions asked; a small local model is not a production "
    "answer engine, and its habits need not be another model's."
)


def run(request: StudyRequest, loaded: LoadedModel) -> tuple[StudyResult, Comparison | None] | None:
    """Run the study (and its rewrite) in this model's turn, with progress; a rerun (Stop) interrupts it."""
    bar = st.progress(0.0, text="Waiting for the model")
    studies: list[tuple[str, Study]] = [("", request.study)]
    if request.variant is not None:
        studies.append((" (rewrite)", with_passage(request.study, *request.variant)))
    options = {"n_orders": request.orders, "order_kind": request.order_kind, "seed": request.seed}
    results = []
    with cache.served(request.model).turns.turn(
        lambda ahead: bar.progress(0.0, text=f"Queued: {ahead} job(s) ahead of yours on this shared model")
    ):
        for label, study in studies:
            results.append(
                run_study(
                    loaded,
                    study,
                    method=request.method,
                    **options,
                    progress=lambda done, what, label=label: bar.progress(min(1.0, done), text=what + label),
                )
            )
    bar.empty()
    comparison = None if request.variant is None else compare(results[0], results[1], request.variant[0])
    return results[0], comparison


def passage_table(result: StudyResult, value_name: str) -> pd.DataFrame:
    """One row per passage: share with its interval, top-1 rate, the questions it leads (numbered from 1), text."""
    return pd.DataFrame(
        [
            {
                "passage": s.passage,
                f"mean {value_name}": round(s.share.mean, 4),
                "95% low": round(s.share.low, 4),
                "95% high": round(s.share.high, 4),
                "top-1 rate": round(s.top1_rate, 3),
                "questions led": ", ".join(str(q + 1) for q in s.leads),
                "text": result.study.text(s.passage),
            }
            for s in result.passages
        ]
    )


def show_comparison(result: StudyResult, comparison: Comparison, value_name: str) -> None:
    """The A/B rewrite: paired share change, per-question lines, answer changes and given answers' log-probs."""
    st.subheader("A/B rewrite")
    st.text(describe_change(comparison.share))
    st.plotly_chart(
        paired_figure(comparison.share, [c.question for c in result.study.cases], value_name),
        key="study_chart_paired",
    )
    lp = comparison.logprob_delta
    if lp.n:
        st.text(
            f"Given answers' log-probability: {comparison.logprob_before.mean:.2f} → {comparison.logprob_after.mean:.2f} "
            f"nats ({lp.mean:+.2f}, 95% CI {lp.low:+.2f} to {lp.high:+.2f}) over {lp.n} questions."
        )
    if comparison.answer_changes:
        st.caption("Generated answers that changed with the rewrite:")
        st.dataframe(
            pd.DataFrame(
                [
                    {"question": result.study.cases[q].question, "before": a, "after": b}
                    for q, a, b in comparison.answer_changes
                ]
            ),
            hide_index=True,
        )
    elif any(c.answer is None for c in result.study.cases):
        st.caption("No generated answer changed with the rewrite.")


start_page()
st.title("Study")
st.caption(
    "Many questions over the same passages, each run with the passages in several orders: which passages the "
    "answers draw on (by content, averaged over positions), whether position matters, and what a rewrite changes."
)
st.info(FRAMING, icon="ℹ️")
model_name = model_picker()
loaded = get_model(model_name)
if loaded is None:
    st.stop()
if st.session_state.pop("study_running", False):
    st.warning("The study was stopped before it finished; nothing was kept from it.", icon="⏹️")
request = study_form(model_name)
if request is not None:
    stop = st.empty()  # shown only while the study runs
    stop.button("Stop", help="Stop the study now (the questions done so far are discarded).")
    st.session_state.study_running = True
    try:
        st.session_state.study_result = (model_name, run(request, loaded))
    except PromptError as problem:
        st.session_state.pop("study_result", None)
        warning(str(problem))
    st.session_state.pop("study_running", None)
    stop.empty()
shown_model, outcome = st.session_state.get("study_result", (model_name, None))
if outcome is None:
    st.info(
        "Choose the passages, questions and orders, then press **Run study**. Nothing runs before that.",
        icon="👆",
    )
    st.stop()
if shown_model != model_name:
    st.info("The model changed: press **Run study** to run it with this model.", icon="👆")
    st.stop()

result, comparison = outcome
value_name = "share" if result.method == "attention" else "log-prob drop (nats)"
st.caption(
    f"{len(result.study.cases)} questions × {result.n_orders} orders ({result.order_kind}, seed {result.seed}), "
    f"{len(result.runs)} runs in {result.seconds:.1f} s. Measure: {MEASURES[result.method]}. "
    "Intervals: 95% bootstrap over questions, each question's orders averaged first."
)
st.subheader("By passage")
st.dataframe(passage_table(result, value_name), hide_index=True, width="stretch")
st.plotly_chart(passage_share_figure(result.passages, value_name), key="study_chart_passages")
st.subheader("By position")
st.caption("Share of whichever passage sits at each position: a flat curve means placement does not matter.")
st.plotly_chart(position_figure(result.positions, value_name), key="study_chart_positions")
st.dataframe(
    pd.DataFrame(
        [
            {
                "position": p.position + 1,
                f"mean {value_name}": round(p.share.mean, 4),
                "95% low": round(p.share.low, 4),
                "95% high": round(p.share.high, 4),
                "questions": p.share.n,
            }
            for p in result.positions
        ]
    ),
    hide_index=True,
)
if comparison is not None:
    show_comparison(result, comparison, value_name)
with st.expander("Every run (question × order × passage)"):
    st.dataframe(pd.DataFrame(export_rows(result)), hide_index=True, width="stretch")
st.subheader("Export")
download = st.columns(2)
download[0].download_button(
    "Download JSON",
    json.dumps(export_json(result, comparison), indent=2),
    "study.json",
    "application/json",
    help="passages, positions, every row and the A/B result.",
)
download[1].download_button(
    "Download CSV",
    pd.DataFrame(export_rows(result)).to_csv(index=False),
    "study.csv",
    "text/csv",
    help="One row per question, order and passage.",
)
