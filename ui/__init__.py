"""The app's Streamlit side: cached loading and tracing, the model picker, navigation, shared widgets.

Pages import from here and from :mod:`attnviz`; the library never imports Streamlit or this package.
"""

import os

# Before torch loads OpenMP: idle OpenMP threads spin for about 0.3 ms, not libgomp's default 3 ms.
# Spinning that long stole the cores a busy shared server's other threads need (a 17-token trace took
# 12 s instead of 1.3 s under load), while no spinning at all (OMP_WAIT_POLICY=PASSIVE) made every
# trace about 1.5x slower: each of its many small parallel operations waited for a sleeping thread.
os.environ.setdefault("GOMP_SPINCOUNT", "30000")
