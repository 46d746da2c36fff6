"""Landing page: what attnviz is and which models are ready offline."""

import streamlit as st

import pages.common  # noqa: F401 - leaves Streamlit's legacy pages mode (see there)
from attnviz.loading import describe_builtins

st.title("attnviz")
st.markdown(
    "See what a transformer attends to: every layer and head, the masks it uses, "
    "and which passages of a context an answer came from. Every weight shown is the "
    "one the model computed, recorded by our own attention function."
)
st.subheader("Built-in models (work offline)")
st.dataframe(
    [{"model": row["name"], "installed": row["available"], "about": row["description"]} for row in describe_builtins()],
    hide_index=True,
    width="stretch",
)
st.caption("Hub downloads are off unless the app is started with ATTNVIZ_ONLINE=1.")
