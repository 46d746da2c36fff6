"""attnviz Streamlit app: entry point and page navigation (the pages are listed in ui.navigation.PAGES)."""

import streamlit as st

from ui.navigation import PAGES

# Hidden: each page draws the sidebar links itself (ui.navigation.start_page).
current = st.navigation(
    [st.Page(page.path, title=page.title, default=page.default) for page in PAGES], position="hidden"
)
current.run()
