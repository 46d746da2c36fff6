"""The app's pages (one list, used by app.py and the Home page) and the frame every page starts with."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st


@dataclass(frozen=True)
class PageEntry:
    """A page script under pages/, its title and what it is for (shown on Home)."""

    path: str
    title: str
    about: str
    default: bool = False


# While a script runs, Streamlit fades the elements it has not redrawn yet (``transition: opacity 1s ease-in
# 0.5s``) and slides a progress bar to each new value over 0.5 s. With no GPU, Chromium recomposites the page
# every frame of either, on the cores the run itself needs. Out-of-date elements still dim after 0.5 s, in one
# step, and progress bars jump.
NO_ANIMATION_WHILE_RUNNING = (
    "<style>[data-testid='stElementContainer'][data-stale='true'] {transition: opacity 0s 0.5s;}"
    " [data-testid='stProgress'] * {transition: none !important;}</style>"
)


PAGES = (
    PageEntry("pages/home.py", "Home", "What attnviz is, the models ready offline, where to start.", default=True),
    PageEntry(
        "pages/learn.py", "Learn",
        "How attention works step by step, on a toy or the loaded model's first layer; variants, FlashAttention, cost.",
    ),
    PageEntry(
        "pages/explore.py", "Explore",
        "Every layer and head of a prompt at a glance, one head in detail, aggregates, head statistics, ablation.",
    ),
    PageEntry(
        "pages/heads.py", "Heads",
        "What each head does across a corpus: roles with stated thresholds, distributions, ablation checks.",
    ),
    PageEntry(
        "pages/masks.py", "Masks",
        "The masks a model really uses (causal, padding, chat), and masks you build and apply to it.",
    ),
    PageEntry(
        "pages/sources.py", "Sources",
        "Which passages of a context an answer was read from, by attention and by ablation, and how faithful.",
    ),
    PageEntry(
        "pages/study.py", "Study",
        "Many questions over the same passages in several orders: which passages answers draw on, position bias, A/B rewrites.",
    ),
    PageEntry("pages/bertviz_views.py", "bertviz views", "bertviz's head and model views of our traces, offline."),
)  # fmt: skip


def start_page() -> None:
    """Page settings and the sidebar links: every page calls this first.

    Pages draw the frame themselves (not app.py) so a page is whole however Streamlit runs
    it; a fresh server opened at a page URL runs that page directly until app.py's
    ``st.navigation`` has run once.
    """
    st.set_page_config(page_title="attnviz", layout="wide")  # no icons: Material ones fetch a favicon online
    st.html(NO_ANIMATION_WHILE_RUNNING)  # style only: Streamlit adds it to the page without taking any space
    with st.sidebar:
        for page in PAGES:
            st.page_link(page.path, label=page.title)
        st.divider()
