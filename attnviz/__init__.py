"""attnviz: record, inspect and explain the attention of Hugging Face transformers.

The public surface is one verb per job: ``load_model``, ``trace``, ``attribute``, and the Learn
API ``attnviz.variants``. Importing attnviz puts the Hugging Face hub in offline mode unless the
user opts in with ``ATTNVIZ_ONLINE=1`` (see :mod:`attnviz.models.offline`).

One package per concept, imports running down this list only:
``models`` → ``tracing`` → ``heads``, ``masks``, ``views`` → ``sources``, ``learn``.
"""

import sys

from attnviz.models import offline as _offline

_offline.configure()

from attnviz.learn import variants  # noqa: E402
from attnviz.models.loading import LoadedModel, ModelInfo, ModelLoadError, load_model  # noqa: E402
from attnviz.models.registry import builtin_models  # noqa: E402
from attnviz.sources.attribution import attribute  # noqa: E402
from attnviz.tracing.trace import Trace, trace, trace_batch  # noqa: E402

# `import attnviz.variants` and `from attnviz.variants import ...` keep working: the Learn API's public name.
sys.modules[f"{__name__}.variants"] = variants

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
    "variants",
]
