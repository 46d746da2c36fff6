"""attnviz Streamlit app: entry point and page navigation."""

import streamlit as st

st.set_page_config(page_title="attnviz", layout="wide")  # no icons: Material ones make the browser fetch a favicon online

PAGES = [
    st.Page("pages/home.py", title="Home", default=True),
    st.Page("pages/explore.py", title="Explore"),
    st.Page("pages/masks.py", title="Masks"),
    st.Page("pages/sources.py", title="Sources"),
    st.Page("pages/bertviz_views.py", title="bertviz views"),
]

# Our own sidebar links: Streamlit's automatic menu would also list the legacy pages/
# folder (helpers like pages/common.py) when a page URL is opened directly.
current = st.navigation(PAGES, position="hidden")
with st.sidebar:
    for page in PAGES:
        st.page_link(page)
    st.divider()
current.run()
