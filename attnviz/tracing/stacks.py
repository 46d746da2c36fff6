"""Stacks: a trace's self-attention of the encoder or decoder, and the cross-attention of encoder-decoders."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnviz.hooks import Stack
from attnviz.tracing.trace import Trace

STACK_LABELS: dict[Stack, str] = {
    "decoder": "decoder self-attention",
    "encoder": "encoder self-attention",
    "cross": "cross-attention",
}

@dataclass(frozen=True)
class StackView:
    """One attention stack of a trace: ``attention`` [layers, heads, queries, keys] with its tokens."""

    stack: Stack
    attention: np.ndarray
    layers: tuple[int, ...]
    query_tokens: tuple[str, ...]
    key_tokens: tuple[str, ...]


def stacks_of(trace: Trace) -> tuple[Stack, ...]:
    """The stacks a trace holds: the decoder's or encoder's self-attention, plus decoder and cross for seq2seq."""
    if trace.kind == "encoder-decoder":
        return ("encoder", "decoder", "cross")
    return ("decoder",) if trace.kind == "decoder" else ("encoder",)


def stack_view(trace: Trace, stack: Stack) -> StackView:
    """Select one stack of ``trace`` (see :func:`stacks_of`)."""
    if stack not in stacks_of(trace):
        raise ValueError(f"A {trace.kind} trace has no '{stack}' attention.")
    if stack == "cross":
        weights, queries, keys = trace.cross_attention, trace.target_tokens, trace.tokens
    elif stack == "decoder" and trace.kind == "encoder-decoder":
        weights, queries, keys = trace.decoder_attention, trace.target_tokens, trace.target_tokens
    else:
        weights, queries, keys = trace.attention, trace.tokens, trace.tokens
    layers = trace.layers if weights.shape[0] == len(trace.layers) else tuple(range(weights.shape[0]))
    return StackView(stack, weights, layers, queries, keys)
