"""Explore's first view of a prompt from one forward pass: every head summarised, each layer's input kept,
and the head shown in detail recorded as the pass computes it.

Recomputing the detail head from its kept layer input after the pass took 56 ms of a 512-token first
view's 1.3 s (measured); copying its rows while the pass has them costs next to nothing. Other heads
open later from the kept inputs (:func:`attnviz.tracing.layer_inputs.trace_head`), with the same bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnviz.heads.summary import Progress, Summary, summarise
from attnviz.hooks import Hooks
from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import Messages
from attnviz.tracing.layer_inputs import LayerInputs, head_of_recording, keep_inputs
from attnviz.tracing.trace import Trace, record


@dataclass(frozen=True)
class FirstView:
    """A prompt's summary, each layer's attention input (None: its heads take the full pass) and the head
    recorded in full during the pass (``detail``, [1, 1, n, n]; None when none was asked for)."""

    summary: Summary
    inputs: LayerInputs | None
    detail: Trace | None = None

    @property
    def nbytes(self) -> int:
        """Bytes it keeps: the summary's arrays, the layer inputs (71 MB at 1,024 SmolLM2 tokens) and the
        detail head's map (4 MB there)."""
        inputs = 0 if self.inputs is None else self.inputs.nbytes
        return self.summary.nbytes + inputs + (0 if self.detail is None else self.detail.attention.nbytes)

    def head(self, layer: int, head: int) -> Trace | None:
        """The detail head's trace if it is this head, else None."""
        found = self.detail
        return found if found is not None and (found.layers, found.heads) == ((layer,), (head,)) else None


def first_view(
    loaded: LoadedModel,
    text: str | None = None,
    *,
    messages: Messages | None = None,
    target: str | None = None,
    detail: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> FirstView:
    """One forward pass that keeps no full map but ``detail``'s (layer, head) of the main stack: the summary, and
    each layer's attention input in the model's dtype, so that any other head is recomputed from its layer alone.

    Raises ValueError, before any model work, for a head the main stack does not have.
    """

    def summary_pass(also: Hooks | None = None) -> Summary:
        return summarise(loaded, text, messages=messages, target=target, progress=progress, also=also)

    if detail is None:
        found, kept = keep_inputs(loaded, summary_pass)
        return FirstView(found, kept)
    layer, head = detail
    if layer not in loaded.main_layers or not 0 <= head < loaded.n_heads:
        raise ValueError(f"the {loaded.main_stack} has no layer {layer}, head {head}")
    # The summary pass chunks its queries itself (as a full trace does): record() only lends it the recorder.
    (found, recording), kept = keep_inputs(
        loaded, lambda: record(loaded, {}, layers=[layer], heads=[head], run=summary_pass)
    )
    if found.stack not in recording.weights:  # its attention bypassed ours: the head opens later, as any other
        return FirstView(found, kept)
    return FirstView(found, kept, head_of_recording(loaded, found.stack, found.input_ids, recording, head))
