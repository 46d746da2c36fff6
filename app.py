"""attnviz Streamlit app: entry point and page navigation (the pages are listed in ui.navigation.PAGES).

``streamlit run app.py`` imports this file to find ``app``, whose lifespan loads the default model while
the server starts (ui.startup); each session then runs this file as ``__main__``: the navigation.
"""

import streamlit as st

from ui.navigation import PAGES

if __name__ == "__main__":
    # Hidden: each page draws the sidebar links itself (ui.navigation.start_page).
    current = st.navigation(
        [st.Page(page.path, title=page.title, default=page.default) for page in PAGES], position="hidden"
    )
    current.run()
else:
    from ui.startup import lifespan

    app = st.App(__file__, lifespan=lifespan)
