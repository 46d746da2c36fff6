"""Network policy: offline by default, downloads only when the user opts in.

The hub libraries read these variables when they are first imported, so
:func:`configure` must run before ``transformers`` or ``huggingface_hub`` is imported.
"""

import os

ONLINE_VARIABLE = "ATTNVIZ_ONLINE"


def online_allowed() -> bool:
    """True when the user asked for hub downloads (``ATTNVIZ_ONLINE=1``)."""
    return os.environ.get(ONLINE_VARIABLE, "").strip().lower() in {"1", "true", "yes"}


def configure() -> None:
    """Put transformers and the hub client offline unless downloads are allowed."""
    if online_allowed():
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
