"""The Study page's form: passages and questions (demo, typed one per line, or uploaded), orders, method, rewrite.

Nothing is read until "Run study" is pressed, so typing never runs the model. Problems with the
input are shown literally (never as Markdown).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st

from attnviz.sources.passages import MAX_UPLOAD_BYTES, PassageError
from attnviz.sources.study import ORDER_KINDS, STUDY_METHODS, Study
from attnviz.sources.study_io import (
    ANSWER_SEPARATOR,
    STUDY_SUFFIXES,
    demo_rewrite,
    demo_study,
    parse_passages,
    parse_study,
    typed_study,
)
from attnviz.tracing.inputs import PromptError
from ui.widgets import error

SOURCES = ("Demo study", "Type or paste", "Upload")
METHOD_LABELS = {"attention": "Attention (retrieval heads)", "ablation": "Ablation (leave one out; slower)"}
MAX_ORDERS = 8


@dataclass(frozen=True)
class StudyRequest:
    """What the user asked for when pressing "Run study"; ``variant`` is (passage id, rewritten text) or None."""

    model: str
    study: Study
    orders: int
    order_kind: str
    seed: int
    method: str
    variant: tuple[str, str] | None


def _upload_text(upload: object) -> str:
    """An uploaded .jsonl/.csv file's UTF-8 text; PassageError if too large or not UTF-8."""
    data = upload.getvalue()
    if len(data) > MAX_UPLOAD_BYTES:
        raise PassageError(
            f"'{upload.name}' has {len(data):,} bytes; files up to {MAX_UPLOAD_BYTES:,} are accepted."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PassageError(f"'{upload.name}' is not UTF-8 text.") from None


def _typed_defaults() -> tuple[str, str]:
    """The demo study as typed lines: passages one per line, questions as "question | answer"."""
    demo = demo_study()
    questions = [c.question + (ANSWER_SEPARATOR + c.answer if c.answer else "") for c in demo.cases]
    return "\n".join(text for _, text in demo.passages), "\n".join(questions)


def _study_inputs(source: str) -> object:
    """The form's study widgets for ``source``; returns a function reading them into a Study once submitted."""
    if source == "Demo study":
        demo = demo_study()
        st.caption("Six invented passages about the town of Wrenfield; twelve questions with given answers.")
        st.dataframe(pd.DataFrame(demo.passages, columns=["id", "text"]), hide_index=True, width="stretch")
        return demo_study
    if source == "Type or paste":
        passages, questions = _typed_defaults()
        passage_text = st.text_area(
            "Passages, one per line (ids P1, P2, …)", passages, height=160, key="study_passages",
            help="Every question is asked over all of these passages.",
        )  # fmt: skip
        question_text = st.text_area(
            "Questions, one per line (optionally `question | given answer`)", questions, height=200,
            key="study_questions",
            help="A given answer is teacher-forced in every order; without one the model answers once and that "
            "answer is scored in every order.",
        )  # fmt: skip
        return lambda: typed_study(passage_text, question_text)
    cases = st.file_uploader(
        f"Questions (.jsonl or .csv, up to {MAX_UPLOAD_BYTES:,} bytes)", type=[s[1:] for s in STUDY_SUFFIXES],
        key="study_cases_file", help="Fields: question, optional answer, optional passage_ids (ids, `|`-separated "
        "in .csv) or passages (texts of the question's own passages).",
    )  # fmt: skip
    passages_file = st.file_uploader(
        "Shared passages (.jsonl or .csv with id and text; optional)", type=[s[1:] for s in STUDY_SUFFIXES],
        key="study_passages_file",
    )  # fmt: skip

    def read() -> Study:
        if cases is None:
            raise PassageError("Upload a questions file.")
        shared = (
            () if passages_file is None else parse_passages(passages_file.name, _upload_text(passages_file))
        )
        return parse_study(cases.name, _upload_text(cases), shared)

    return read


def study_form(model: str) -> StudyRequest | None:
    """Draw the form; on "Run study" return the request, or None after showing what is wrong."""
    source = st.radio(
        "Study", SOURCES, horizontal=True, key="study_source", help="Where questions and passages come from."
    )
    default_id, default_text = demo_rewrite()
    with st.form("study_form"):
        read_study = _study_inputs(source)
        cols = st.columns(4)
        orders = cols[0].number_input(
            "Orders per question (K)", 1, MAX_ORDERS, 3, key="study_orders",
            help="Each question runs with its passages in K orders, so position and content can be told apart.",
        )  # fmt: skip
        order_kind = cols[1].radio(
            "Orders", ORDER_KINDS, key="study_order_kind",
            help="random: seeded permutations; rotation: the list shifted evenly, each passage in a new place.",
        )  # fmt: skip
        seed = cols[2].number_input(
            "Seed", 0, 1_000_000, 0, key="study_seed", help="Seeds the orders and intervals."
        )
        method = cols[3].radio(
            "Method", STUDY_METHODS, format_func=METHOD_LABELS.get, key="study_method",
            help="Ablation removes each passage in turn (one extra pass per passage and run).",
        )  # fmt: skip
        rewrite = st.checkbox(
            "Compare a rewrite (A/B)", key="study_ab", help="Rerun with one passage edited."
        )
        ab = st.columns([1, 4])
        passage_id = ab[0].text_input(
            "Passage id", default_id if source == "Demo study" else "P1", key="study_ab_id"
        )
        rewritten = ab[1].text_area("Rewritten passage", default_text, height=80, key="study_ab_text")
        if not st.form_submit_button("Run study", type="primary"):
            return None
    try:
        study = read_study()
        variant = (passage_id.strip(), rewritten) if rewrite else None
        if variant is not None and variant[0] not in dict(study.passages):
            raise PassageError(f"No passage has the id {variant[0]!r}.")
    except PromptError as problem:
        error(str(problem))
        return None
    return StudyRequest(model, study, int(orders), order_kind, int(seed), method, variant)
