"""attnviz Streamlit app: entry point and page navigation."""

import streamlit as st

st.set_page_config(page_title="attnviz", layout="wide")  # no page_icon: Material icons fetch a favicon online

PAGES = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/explore.py", title="Explore", icon=":material/grid_view:"),
    st.Page("pages/masks.py", title="Masks", icon=":material/visibility_off:"),
    st.Page("pages/sources.py", title="Sources", icon=":material/menu_book:"),
    st.Page("pages/bertviz_views.py", title="bertviz views", icon=":material/account_tree:"),
]

# Our own sidebar links: Streamlit's automatic menu would also list the legacy pages/
# folder (helpers like pages/common.py) when a page URL is opened directly.
current = st.navigation(PAGES, position="hidden")
with st.sidebar:
    for page in PAGES:
        st.page_link(page)
    st.divider()
current.run()
