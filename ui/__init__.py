"""The app's Streamlit side: cached loading and tracing, the model picker, navigation, shared widgets.

Pages import from here and from :mod:`attnviz`; the library never imports Streamlit or this package.
"""

import os

# Before torch loads OpenMP: idle OpenMP threads that spin steal the cores a busy shared server's
# other threads need (measured: a 17-token trace took 12 s instead of 1.3 s under load).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
