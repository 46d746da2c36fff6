"""Summaries of long prompts: head-grid thumbnails and head statistics reduced during the forward pass.

Every layer's full maps grow as layers × heads × n² (21 GB for SmolLM2 at 8,192 tokens). A
:class:`Summary` is reduced inside our attention function, one chunk of queries at a time,
on the device that holds each layer: at any moment it holds one chunk's weights plus, per
layer, [heads, 24, n] block sums. Thumbnails equal :func:`attnviz.tracing.thumbnails.thumbnail` of the
full maps and statistics equal :mod:`attnviz.heads.stats` (up to float32 summation order).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from attnviz.heads.stats import HeadStats
from attnviz.hooks import AttentionCall, Hooks, Stack
from attnviz.models.loading import LoadedModel
from attnviz.tracing.forward import chunk_bytes_for, forward
from attnviz.tracing.inputs import Messages, batch_inputs
from attnviz.tracing.thumbnails import THUMBNAIL, ThumbnailSums
from attnviz.tracing.tokens import display_tokens

STAT_NAMES = ("entropy", "distance", "first_token", "previous_token")
# Told (layers done, layers in all) as each layer of a summary pass is reduced: a slow pass shows progress.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Summary:
    """What the head grid and head statistics need of one prompt's main self-attention stack.

    ``thumbnails`` is float32 [layers, heads, size, size] (each head's map block-averaged and
    scaled to its maximum, as :func:`attnviz.tracing.thumbnails.thumbnail`); ``head_stats`` is float64
    [layers, heads, S] with S = ``head_stat_names``; ``device``/``dtype`` say where it ran.
    """

    model_name: str
    stack: Stack
    tokens: tuple[str, ...]
    special: tuple[bool, ...]
    input_ids: np.ndarray
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    thumbnails: np.ndarray
    head_stats: np.ndarray
    head_stat_names: tuple[str, ...]
    device: str
    dtype: str

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    @property
    def nbytes(self) -> int:
        """Bytes of its arrays (as :meth:`arrays` gives them): what a cache keeps of it."""
        return sum(array.nbytes for array in self.arrays().values())

    def stats(self) -> HeadStats:
        """The statistics as :class:`attnviz.heads.stats.HeadStats` (what the statistics view shows)."""
        columns = {name: self.head_stats[..., i] for i, name in enumerate(self.head_stat_names)}
        return HeadStats(layers=self.layers, heads=self.heads, **columns)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays ``python -m attnviz trace --summary`` writes to .npz."""
        return {
            "tokens": np.array(self.tokens, dtype=str),
            "input_ids": self.input_ids,
            "layers": np.array(self.layers),
            "heads": np.array(self.heads),
            "thumbnails": self.thumbnails,
            "head_stats": self.head_stats,
            "head_stat_names": np.array(self.head_stat_names, dtype=str),
        }


def entropy_bits(p: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """-Σ p log2 p per row [heads, rows] from the softmax's own scores, without a log per weight.

    With m the row's top score, log p = (s − m) + log p_max, so the entropy is
    −log p_max − Σ p (s − m): every term has one sign, so nothing cancels. p_max is the largest weight
    (the softmax keeps the scores' order). ``scores`` is the pass's scratch copy: it is overwritten,
    which spares two [heads, rows, keys] temporaries (einsum's row-wise dot took 3x as long here).
    """
    top = scores.amax(-1, keepdim=True)
    centred = scores.sub_(top).clamp_min_(torch.finfo(scores.dtype).min)  # -inf scores carry p = 0
    return (-torch.log(p.amax(-1)) - centred.mul_(p).sum(-1)) / math.log(2)


class StatSums:
    """Running sums of :data:`STAT_NAMES` for one layer over the chunks of its queries, on that layer's device.

    Shared by the long-prompt summary and the head atlas (:mod:`attnviz.heads.atlas`), which
    reduce the same statistics during the forward pass.
    """

    def __init__(self, heads: int, n_queries: int, n_keys: int, device: torch.device) -> None:
        self.n_queries, self.n_keys = n_queries, n_keys
        self.sums = torch.zeros((heads, len(STAT_NAMES)), dtype=torch.float32, device=device)

    def add(self, p: torch.Tensor, scores: torch.Tensor, start: int) -> torch.Tensor:
        """Add one chunk: float32 weights and scores [heads, rows, width] for queries ``start..``, zero beyond ``width``
        (``scores`` is overwritten: see :func:`entropy_bits`).

        Returns the chunk's entropies [heads, rows] in bits (the head atlas reuses them).
        """
        stop, width = start + p.shape[1], p.shape[2]
        shift = self.n_keys - self.n_queries
        queries = torch.arange(start + shift, stop + shift, dtype=torch.float32, device=p.device)
        offsets = (queries[:, None] - torch.arange(width, dtype=torch.float32, device=p.device)[None, :]).abs_()
        self.sums[:, 1] += p.reshape(p.shape[0], -1) @ offsets.reshape(-1)  # a matrix-vector product
        entropy = entropy_bits(p, scores)  # last: it overwrites scores
        self.sums[:, 0] += entropy.sum(1)
        self.sums[:, 2] += p[:, :, 0].sum(1)
        rows = torch.arange(max(start, 1), stop, device=p.device)
        rows = rows[rows - 1 < width]
        self.sums[:, 3] += p[:, rows - start, rows - 1].sum(1)
        return entropy

    def finish(self) -> np.ndarray:
        """Statistics [heads, S] float64 on the host: each sum over the queries it averages."""
        counts_per_stat = [self.n_queries, self.n_queries, self.n_queries, max(self.n_keys - 1, 1)]
        return self.sums.double().cpu().numpy() / np.array(counts_per_stat, dtype=np.float64)


class _Reduced(Exception):
    """Every layer of the summarised stack is reduced: the rest of the pass (the last MLP, the logits) is not needed."""


class _LayerSums:
    """Thumbnail and statistic sums of one layer over the chunks of its queries."""

    def __init__(self, weights: torch.Tensor, n_queries: int, n_keys: int, size: int) -> None:
        heads = weights.shape[1]
        self.thumbnails = ThumbnailSums(heads, n_queries, n_keys, size, weights.device)
        self.stats = StatSums(heads, n_queries, n_keys, weights.device)

    def add(self, weights: torch.Tensor, scores: torch.Tensor, start: int) -> None:
        """Add one chunk: weights and scores [heads, rows, width] for queries ``start..``, zero beyond ``width``."""
        p = weights.float()
        self.thumbnails.add(p, start)
        self.stats.add(p, scores.float(), start)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(thumbnails [heads, size, size] float32, statistics [heads, S] float64) on the host."""
        return self.thumbnails.finish(), self.stats.finish()


def summarise(
    loaded: LoadedModel,
    text: str | None = None,
    *,
    messages: Messages | None = None,
    target: str | None = None,
    size: int = THUMBNAIL,
    max_tokens: int | None = None,
    chunk_bytes: int | None = None,
    progress: Progress | None = None,
    also: Hooks | None = None,
) -> Summary:
    """Thumbnails and statistics of every head of the main stack, in one memory-bounded forward pass.

    ``max_tokens`` None allows up to the model's context length; ``chunk_bytes`` None takes the
    default (:func:`attnviz.tracing.forward.chunk_bytes_for`); ``progress`` is told each layer done;
    ``also``'s recorder sees the main-stack calls it asks for (e.g. one head recorded in full, see
    :mod:`attnviz.heads.first_view`); only its recorder: its ablations, mask and chunk size do not apply.
    The pass stops once the stack's last layer is reduced: nothing after its attention weights (its output,
    MLP, the logits) is computed. (On a model that accelerate offloads layer by layer, that last layer's
    weights stay on the accelerator until the next pass moves them.)
    """
    prompt: str | Messages = messages if messages is not None else (text or "")
    batch = batch_inputs(loaded, [prompt], target=target, max_tokens=max_tokens)
    stack = loaded.main_stack
    running: dict[int, _LayerSums] = {}
    done: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    n_layers = len(loaded.main_layers)

    def reduce(call: AttentionCall) -> None:
        if call.site.stack != stack:
            return
        if also is not None and also.records(call.site):
            also.record(call)  # first: the reduction below overwrites the call's scores
        layer = call.site.layer
        if layer not in running:
            running[layer] = _LayerSums(call.weights, call.n_queries, call.n_keys, size)
        running[layer].add(call.weights[0], call.scores[0], call.query_start)
        if call.query_start + call.weights.shape[-2] == call.n_queries:  # the layer's last chunk
            done[layer] = running.pop(layer).finish()
            if progress is not None:
                progress(len(done), n_layers)
            if len(done) == n_layers:
                raise _Reduced

    hooks = Hooks(record=reduce, chunk_bytes=chunk_bytes or chunk_bytes_for(loaded, batch.inputs))
    with contextlib.suppress(_Reduced):
        forward(loaded, batch.inputs, hooks, last_logits_only=True)
    layers = tuple(sorted(done))
    finished = [done[layer] for layer in layers]
    tokens, special = display_tokens(loaded.tokenizer, batch.encoded[0])
    return Summary(
        model_name=loaded.info.name,
        stack=stack,
        tokens=tokens,
        special=special,
        input_ids=np.asarray(batch.encoded[0]),
        layers=layers,
        heads=tuple(range(loaded.n_heads)),
        thumbnails=np.stack([thumbs for thumbs, _ in finished]),
        head_stats=np.stack([stats for _, stats in finished]),
        head_stat_names=STAT_NAMES,
        device=loaded.device_label,
        dtype=str(loaded.dtype).removeprefix("torch."),
    )
