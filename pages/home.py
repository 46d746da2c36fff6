"""Landing page: what attnviz is, where to go next, and which models are ready offline."""

from ui.startup import import_library

import_library()  # first: the library is never imported beside the server's preload thread (ui.startup.IMPORTS)

import streamlit as st

from attnviz.models.registry import describe_builtins
from ui.navigation import PAGES, start_page

start_page()
st.title("attnviz")
st.markdown(
    "See what a transformer attends to: every layer and head, the masks it uses, "
    "and which passages of a context an answer came from. Every weight shown is the "
    "one the model computed, recorded by our own attention function."
)
st.subheader("Where to start")
st.caption("New here? Open Explore: it traces a sample prompt; click any head in the grid to see it in detail.")
for page in PAGES:
    if not page.default:
        link, about = st.columns([1, 4], vertical_alignment="center")
        link.page_link(page.path, label=f"**{page.title}** →")
        about.write(page.about)
st.subheader("Built-in models (work offline)")
st.dataframe(
    [{"model": row["name"], "installed": row["available"], "about": row["description"]} for row in describe_builtins()],
    hide_index=True,
    width="stretch",
)
st.caption("Hub downloads are off unless the app is started with ATTNVIZ_ONLINE=1.")
