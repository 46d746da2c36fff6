"""The app's Streamlit side: cached loading and tracing, the model picker, navigation, shared widgets.

Pages import from here and from :mod:`attnviz`; the library never imports Streamlit or this package.
"""
