"""attnviz: record, inspect and explain the attention of Hugging Face transformers.

The public surface is one verb per job: ``load_model``, ``trace``, ``attribute``.
Importing attnviz puts the Hugging Face hub in offline mode unless the user opts in
with ``ATTNVIZ_ONLINE=1`` (see :mod:`attnviz.offline`).
"""

from attnviz import offline as _offline

_offline.configure()

from attnviz.attribution import attribute  # noqa: E402  (after trace: it builds on it)
from attnviz.loading import LoadedModel, ModelInfo, ModelLoadError, builtin_models, load_model  # noqa: E402
from attnviz.trace import Trace, trace, trace_batch  # noqa: E402

__all__ = [
    "LoadedModel",
    "ModelInfo",
    "ModelLoadError",
    "Trace",
    "attribute",
    "builtin_models",
    "load_model",
    "trace",
    "trace_batch",
]
