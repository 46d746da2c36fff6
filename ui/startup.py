"""Server start-up: the shared default model loads while the server starts, not when the first user arrives.

``streamlit run app.py`` serves app.py's ``st.App``; its lifespan starts a background thread that
imports torch and transformers (5-8 s on 2 cores) and loads ``ATTNVIZ_PRELOAD`` (default: the
built-in default model; comma-separated names; empty for none) into the same ``st.cache_resource``
the pages use, then traces one short prompt through the pages' path (``warm_up``). A page that asks
meanwhile waits for that load instead of starting its own.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from streamlit.logger import get_logger

LOGGER = get_logger(__name__)
# One thread at a time imports the library: transformers' lazy modules are not thread-safe, and a page's script
# importing them while the preload thread imported or loaded a model failed with "cannot import name AutoConfig".
# The preload thread holds it until its model is loaded and warmed up; every session's script takes it first.
IMPORTS = threading.RLock()
WARM_UP_TEXT = "The server traces this once while it starts."


def import_library() -> None:
    """Import every module of the library (torch, transformers and attnviz) and ``ui.cache`` under
    :data:`IMPORTS`, so no page's script imports any of them beside another thread; at once when done."""
    with IMPORTS:
        import attnviz

        for module in pkgutil.walk_packages(attnviz.__path__, "attnviz."):
            if module.name != "attnviz.__main__":  # the command line itself: it would run
                importlib.import_module(module.name)
        importlib.import_module("ui.cache")


def preload_names() -> list[str]:
    """The models to load at start-up, from ``ATTNVIZ_PRELOAD``."""
    from attnviz.models.registry import DEFAULT_MODEL  # imports torch: only ever called on the preload thread

    given = os.environ.get("ATTNVIZ_PRELOAD", DEFAULT_MODEL)
    return [name.strip() for name in given.split(",") if name.strip()]


def warm_up(name: str) -> None:
    """Trace one short prompt through the pages' own path and build its head grid figure, so the first
    visitor's run pays no first-call costs (measured in a fresh process: the first trace 0.5 s slower than
    the next, the first grid figure 0.06 s, pandas' import 0.5-1.0 s)."""
    import pandas  # noqa: F401 - the pages' tables; imported here rather than in the first visitor's run

    from attnviz.tracing.stacks import stacks_of
    from attnviz.views import figures
    from ui import cache

    prompt = cache.Prompt(name, WARM_UP_TEXT)
    if cache.summarised(prompt):
        grid = cache.summary_grid(prompt)
        cache.head_trace(prompt, 0, 0)  # the head the first view opens
    else:
        grid = cache.grid(prompt, stacks_of(cache.prompt_trace(prompt))[0])
    figures.head_grid_figure(grid)


def preload() -> None:
    """Load and warm up each start-up model in the pages' shared cache; failures are only logged (a page
    that asks for the model shows its error readably)."""
    start = time.perf_counter()
    # Loading a model imports transformers' model modules too: no page's script imports until it is done.
    with IMPORTS:
        import_library()  # torch and transformers: the slow imports this thread exists for
        from ui import cache

        for name in preload_names():
            try:
                cache.served(name)
            except Exception as problem:  # noqa: BLE001 - any load error is the page's to show
                LOGGER.warning("Could not preload %s: %s", name, problem)
                continue
            try:
                warm_up(name)
            except Exception as problem:  # noqa: BLE001 - e.g. a vision model has no text to trace
                LOGGER.info("%s: no warm-up trace (%s)", name, problem)
            LOGGER.info("Preloaded %s %.1f s after start-up", name, time.perf_counter() - start)


@asynccontextmanager
async def lifespan(_app: object) -> AsyncIterator[None]:
    """Start preloading without delaying the server, which accepts connections at once."""
    threading.Thread(target=preload, name="attnviz-preload", daemon=True).start()
    yield
