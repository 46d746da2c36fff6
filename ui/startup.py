"""Server start-up: the shared default model loads while the server starts, not when the first user arrives.

``streamlit run app.py`` serves app.py's ``st.App``; its lifespan starts a background thread that
imports torch and transformers (5-8 s on 2 cores) and loads ``ATTNVIZ_PRELOAD`` (default: the
built-in default model; comma-separated names; empty for none) into the same ``st.cache_resource``
the pages use. A page that asks meanwhile waits for that load instead of starting its own.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from streamlit.logger import get_logger

LOGGER = get_logger(__name__)


def preload_names() -> list[str]:
    """The models to load at start-up, from ``ATTNVIZ_PRELOAD``."""
    from attnviz.loading import DEFAULT_MODEL  # imports torch: only ever called on the preload thread

    given = os.environ.get("ATTNVIZ_PRELOAD", DEFAULT_MODEL)
    return [name.strip() for name in given.split(",") if name.strip()]


def preload() -> None:
    """Load each start-up model into the pages' shared cache; a failure is only logged (the page shows it)."""
    start = time.perf_counter()
    from ui import cache  # torch and transformers: the slow imports this thread exists for

    for name in preload_names():
        try:
            cache.served(name)
        except Exception as problem:  # noqa: BLE001 - any load error is the page's to show, readably
            LOGGER.warning("Could not preload %s: %s", name, problem)
        else:
            LOGGER.info("Preloaded %s %.1f s after start-up", name, time.perf_counter() - start)


@asynccontextmanager
async def lifespan(_app: object) -> AsyncIterator[None]:
    """Start preloading without delaying the server, which accepts connections at once."""
    threading.Thread(target=preload, name="attnviz-preload", daemon=True).start()
    yield
