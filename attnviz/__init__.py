"""attnviz: record, inspect and explain the attention of Hugging Face transformers.

The public surface is one verb per job: ``load_model``, ``trace``, ``attribute``, and the Learn
API ``attnviz.variants``. Importing attnviz puts the Hugging Face hub in offline mode unless the
user opts in with ``ATTNVIZ_ONLINE=1`` (see :mod:`attnviz.models.offline`).

One package per concept, imports running down this list only:
``hooks`` → ``models`` → ``tracing`` → ``heads``, ``masks`` → ``views`` → ``sources``, ``learn``.

The public names load on first use (PEP 562): importing the package itself imports no concept, so
two threads importing different parts at once (a server's start-up preload and a page's script)
never wait on each other through a half-initialised package.
"""

import importlib
import sys

from attnviz.models import offline as _offline

_offline.configure()

from attnviz.learn import variants  # noqa: E402

# `import attnviz.variants` and `from attnviz.variants import ...` keep working: the Learn API's public name.
sys.modules[f"{__name__}.variants"] = variants

_PUBLIC = {
    "LoadedModel": "attnviz.models.loading",
    "ModelInfo": "attnviz.models.loading",
    "ModelLoadError": "attnviz.models.loading",
    "load_model": "attnviz.models.loading",
    "builtin_models": "attnviz.models.registry",
    "Trace": "attnviz.tracing.trace",
    "trace": "attnviz.tracing.trace",
    "trace_batch": "attnviz.tracing.trace",
    "attribute": "attnviz.sources.attribution",
}

__all__ = [*sorted(_PUBLIC), "variants"]


def __getattr__(name: str) -> object:
    """A public name, imported from its module the first time it is asked for."""
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
