"""Benchmarks of attnviz against the tools a user would use instead, measured in the same run.

``python -m benchmarks --out FILE.json`` runs them (see :mod:`benchmarks.run`). This package
depends on the library; the library never imports it.
"""
