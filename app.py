"""attnviz Streamlit app: entry point and page navigation."""

import streamlit as st

st.set_page_config(page_title="attnviz", page_icon="🔍", layout="wide")

PAGES = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/masks.py", title="Masks", icon="🎭"),
    st.Page("pages/explore.py", title="Explore", icon="🔭"),
    st.Page("pages/bertviz_views.py", title="bertviz views", icon="🧩"),
    st.Page("pages/sources.py", title="Sources", icon="📚"),
]

st.navigation(PAGES).run()
