"""Bytes a view sends to the browser: our bounded bertviz views against bertviz's own model view."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from attnviz.tracing.trace import Trace
from attnviz.views.bertviz import VIEWS, ViewSubset, default_selection, fit


@dataclass(frozen=True)
class PayloadSizes:
    """Bytes sent for one trace: our bounded views vs bertviz's own unbounded model view."""

    n_tokens: int
    head_view: ViewSubset
    model_view: ViewSubset
    bertviz_model_view_bytes: int | None


def bertviz_model_view_bytes(trace: Trace) -> int:
    """Bytes of bertviz's own ``model_view(..., html_action="return")`` of the whole trace (never shown)."""
    from bertviz import model_view  # imports IPython: only when measuring

    def layers(weights: np.ndarray) -> list[torch.Tensor]:
        return [torch.from_numpy(np.asarray(w, dtype=np.float32))[None] for w in weights]

    if trace.kind == "encoder-decoder":
        assert trace.decoder_attention is not None and trace.cross_attention is not None
        html = model_view(
            encoder_attention=layers(trace.attention),
            decoder_attention=layers(trace.decoder_attention),
            cross_attention=layers(trace.cross_attention),
            encoder_tokens=list(trace.tokens),
            decoder_tokens=list(trace.target_tokens),
            html_action="return",
        )
    else:
        html = model_view(layers(trace.attention), list(trace.tokens), html_action="return")
    return len(html.data.encode("utf-8"))


def payload_sizes(trace: Trace, bertviz_max_tokens: int = 64) -> PayloadSizes:
    """Bytes of our default bounded head and model views vs bertviz's unbounded model view.

    bertviz's own view is only built up to ``bertviz_max_tokens`` (it grows to hundreds of MB beyond).
    """
    ours = {view: fit(trace, view, default_selection(trace, view)).subset for view in VIEWS}
    unbounded = bertviz_model_view_bytes(trace) if trace.n_tokens <= bertviz_max_tokens else None
    return PayloadSizes(
        n_tokens=trace.n_tokens,
        head_view=ours["head"],
        model_view=ours["model"],
        bertviz_model_view_bytes=unbounded,
    )
