"""attnviz: record, inspect and explain the attention of Hugging Face transformers.

The public surface is one verb per job: ``load_model``, ``trace``, ``attribute``.
Importing attnviz puts the Hugging Face hub in offline mode unless the user opts in
with ``ATTNVIZ_ONLINE=1`` (see :mod:`attnviz.offline`). The public names are imported
lazily, so light entry points (``python -m attnviz.vendor``) do not load torch.
"""

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING

from attnviz import offline as _offline

_offline.configure()

_PUBLIC = {
    "LoadedModel": "attnviz.loading",
    "ModelInfo": "attnviz.loading",
    "ModelLoadError": "attnviz.loading",
    "builtin_models": "attnviz.loading",
    "load_model": "attnviz.loading",
    "Trace": "attnviz.trace",
    "trace": "attnviz.trace",
    "trace_batch": "attnviz.trace",
    "attribute": "attnviz.attribution",
}
__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:
    from attnviz.attribution import attribute
    from attnviz.loading import LoadedModel, ModelInfo, ModelLoadError, builtin_models, load_model
    from attnviz.trace import Trace, trace, trace_batch


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'attnviz' has no attribute {name!r}")
    return getattr(import_module(_PUBLIC[name]), name)


class _Package(types.ModuleType):
    """Keeps public names bound to their functions when a same-named submodule is imported."""

    def __setattr__(self, name: str, value: object) -> None:
        # Importing attnviz.trace (the module) would otherwise replace attnviz.trace (the function).
        if name in _PUBLIC and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
