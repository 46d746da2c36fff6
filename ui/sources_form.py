"""The Sources page's form: question, passages (list, paste or upload), answer and options; runs only on "Answer".

Passages typed in the form are only read when the form is submitted, so editing never
runs the model. Messages about the user's input are shown literally (never as Markdown).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from attnviz.sources.ablation import DEFAULT_PASSES, MAX_LEAVE_ONE_OUT, MAX_PASSES
from attnviz.sources.attribution import DEFAULT_MAX_NEW_TOKENS, METHODS
from attnviz.sources.demo import DEMO_CASES
from attnviz.sources.passages import (
    MAX_PASSAGES,
    MAX_UPLOAD_BYTES,
    MAX_UPLOAD_FILES,
    PassageError,
    decode_upload,
    split_passages,
)
from ui.widgets import error

METHOD_LABELS = {
    "attention": "Attention (retrieval heads)",
    "naive": "Attention (mean of all heads)",
    "ablation": "Ablation (remove each source)",
}
GRANULARITY_LABELS = {"passage": "Passages", "sentence": "Sentences"}
# Streamlit's uploader states its limit in whole megabytes; ours is in bytes, stated in the label instead.
_HIDE_UPLOAD_LIMIT = (
    "<style>[data-testid='stFileUploaderDropzoneInstructions'] small {display: none;}</style>"
)


def recalibrate_allowed() -> bool:
    """Whether the page offers Recalibrate (``ATTNVIZ_ALLOW_RECALIBRATE=1``): choosing the heads again changes
    every session's results and clears the shared ones, so by default only the operator does it, with
    ``python -m attnviz prepare --recalibrate``."""
    return os.environ.get("ATTNVIZ_ALLOW_RECALIBRATE", "").strip() == "1"


@dataclass(frozen=True)
class Request:
    """What the user asked for when pressing "Answer" (None answer: let the model generate one)."""

    model: str
    question: str
    passages: tuple[str, ...]
    answer: str | None
    methods: tuple[str, ...]
    granularity: str
    max_new_tokens: int
    passes: int


def _init(key: str, value: object) -> None:
    if key not in st.session_state:
        st.session_state[key] = value


def passage_boxes() -> list[str]:
    """One text area per passage plus an empty one; boxes emptied by the user go away after "Answer"."""
    demo = DEMO_CASES[0].passages
    count = st.session_state.get("sources_boxes", len(demo) + 1)
    texts = [
        st.session_state.get(f"sources_passage_{i}", demo[i] if i < len(demo) else "") for i in range(count)
    ]
    kept = [text for text in texts if text.strip()][:MAX_PASSAGES]
    layout = (kept + [""])[:MAX_PASSAGES]
    if layout != texts:  # only after "Answer" changed the boxes: never overwrite what is being typed
        for index, text in enumerate(layout):
            st.session_state[f"sources_passage_{index}"] = text
    for index, text in enumerate(layout):
        _init(f"sources_passage_{index}", text)
    st.session_state.sources_boxes = len(layout)
    for index in range(st.session_state.sources_boxes):
        st.text_area(
            f"Passage {index + 1}",
            key=f"sources_passage_{index}",
            height=68,
            help="Leave a box empty to drop it; a new empty box appears after each Answer.",
        )
    return [st.session_state[f"sources_passage_{i}"] for i in range(st.session_state.sources_boxes)]


def uploaded_passages(files: list) -> list[str]:
    """Passages of the uploaded files (each split at blank lines); a readable error for each file refused."""
    if len(files) > MAX_UPLOAD_FILES:
        error(
            f"{len(files)} files uploaded; at most {MAX_UPLOAD_FILES} are read at once. Remove some.",
            icon="📄",
        )
        return []
    passages: list[str] = []
    for file in files:
        try:
            passages += split_passages(decode_upload(file.name, file.getvalue()))
        except PassageError as problem:
            error(str(problem), icon="📄")
    return passages


def sources_form(model: str) -> tuple[bool, Request | None]:
    """The form: whether "Answer" was pressed, and the Request when the input is usable (else a message shows)."""
    demo = DEMO_CASES[0]
    top = st.columns(2)
    mode = top[0].radio(
        "Passages", ("List", "Paste", "Upload"), horizontal=True, key="sources_mode",
        help="Edit a list, paste one text split at blank lines, or upload .txt/.md files.",
    )  # fmt: skip
    origin = top[1].radio(
        "Answer", ("Generate", "Paste"), horizontal=True, key="sources_origin",
        help="Let the model answer (greedy), or paste an answer (yours, a reference, another system's): it is "
        "scored by teacher forcing, as if the model had written it.",
    )  # fmt: skip
    _init("sources_question", demo.question)
    _init("sources_paste", "\n\n".join(demo.passages))
    _init("sources_answer", "cinnamon rolls")
    with st.form("sources_form", enter_to_submit=False):
        question = st.text_input("Question", key="sources_question", help="Asked about the passages below.")
        files: list = []
        if mode == "List":
            passages = passage_boxes()
        elif mode == "Paste":
            passages = split_passages(
                st.text_area(
                    "Passages separated by blank lines",
                    key="sources_paste",
                    height=200,
                    help="Every blank line starts a new passage.",
                )
            )
        else:
            st.markdown(_HIDE_UPLOAD_LIMIT, unsafe_allow_html=True)  # fixed CSS, no user text
            uploaded = st.file_uploader(
                f"Upload .txt or .md files (UTF-8, up to {MAX_UPLOAD_BYTES:,} bytes each, {MAX_UPLOAD_FILES} files)",
                type=["txt", "md"], accept_multiple_files=True, max_upload_size=1, key="sources_files",
                help="Each file is split into passages at blank lines.",
            )  # fmt: skip
            files = list(uploaded or [])
            passages = []
        answer = None
        if origin == "Paste":
            answer = st.text_area(
                "Answer to attribute", key="sources_answer", height=68,
                help="Scored by teacher forcing: the model did not write it; its log-probability is shown.",
            )  # fmt: skip
        options = st.columns([3, 2, 2, 2])
        with options[0]:
            st.markdown("**Methods**")
            methods = tuple(
                m for m in METHODS
                if st.checkbox(
                    METHOD_LABELS[m], value=m != "ablation", key=f"sources_method_{m}", help=_METHOD_HELP[m]
                )
            )  # fmt: skip
        granularity = options[1].radio(
            "Sources are", list(GRANULARITY_LABELS), format_func=GRANULARITY_LABELS.get, key="sources_granularity",
            help="Attribute the answer to whole passages or to their sentences (split with exact character offsets).",
        )  # fmt: skip
        max_new_tokens = options[2].slider(
            "Longest answer (tokens)", 4, 64, DEFAULT_MAX_NEW_TOKENS, key="sources_max_new",
            help="Greedy generation stops here (not used for a pasted answer).",
        )  # fmt: skip
        passes = options[3].slider(
            "Ablation budget (passes)", 8, MAX_PASSES, DEFAULT_PASSES, step=8, key="sources_passes",
            help=f"Up to {MAX_LEAVE_ONE_OUT} sources each is removed once (one forward pass each); beyond that, "
            "this many passes remove random halves and a linear fit gives each source's effect.",
        )  # fmt: skip
        submitted = st.form_submit_button("Answer", type="primary", help="Run the model on this question.")
    if not submitted:
        return False, None
    if mode == "Upload":
        if not files:
            st.warning("Upload one or more .txt or .md files, then press Answer.", icon="📄")
            return True, None
        passages = uploaded_passages(files)
        if not passages:
            return True, None
    if not methods:
        st.warning("Choose at least one method.", icon="✏️")
        return True, None
    passages = [p for p in passages if p.strip()]
    return True, Request(
        model, question, tuple(passages), answer, methods, granularity, max_new_tokens, passes
    )


_METHOD_HELP = {
    "attention": "One forward pass: attention from the answer, by the heads calibrated to do retrieval.",
    "naive": "One forward pass: attention averaged over every head (the baseline).",
    "ablation": "One pass per removed source (or the ablation budget): how much less likely the answer "
    "becomes. It runs once the attention result is shown; unticked, the answer offers Check by ablation "
    "instead.",
}
