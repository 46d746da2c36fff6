"""A :class:`~attnviz.learn.walkthrough.Walkthrough` as the labelled steps and matrices the Learn page shows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from attnviz.learn.walkthrough import Walkthrough, WalkthroughError


@dataclass(frozen=True)
class Matrix:
    """One labelled matrix of a step: ``values`` [rows, cols]; ``weights`` marks softmax outputs (0–1 colours)."""

    name: str
    values: np.ndarray
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    weights: bool = False


@dataclass(frozen=True)
class Step:
    """One step of the walkthrough: a stable key, a title, one sentence of explanation and its matrices."""

    key: str
    title: str
    explanation: str
    matrices: tuple[Matrix, ...]


def _dims(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(count))


def scale_step(walk: Walkthrough, head: int, d: int, scaled_note: str) -> Step:
    """The scaling step, which says so when scaling is off instead of praising a ×1 that changes nothing."""
    t = walk.tokens
    if walk.scale == 1.0:
        tempered = walk.temperature != 1
        return Step("scale", "Scaling is off",
                    f"The scores are not multiplied by 1/√d_k (here d_k = {d}): they keep growing with "
                    "√d_k, which pushes softmax towards one winner."
                    + (f" They are only divided by the temperature {walk.temperature:g}." if tempered else ""),
                    (Matrix("scores ÷ temperature" if tempered else "unscaled scores", walk.scaled[head], t, t),))  # fmt: skip
    return Step("scale", "Scale by 1/√d_k",
                f"Scores grow with √d_k (here d_k = {d}), which would push softmax to one winner; "
                f"multiplying {scaled_note} keeps them moderate.",
                (Matrix("scaled scores", walk.scaled[head], t, t),))  # fmt: skip


def steps(walk: Walkthrough, head: int = 0) -> tuple[Step, ...]:
    """The walkthrough as steps for query head ``head`` (key/value head ``walk.kv_head(head)``)."""
    if not 0 <= head < walk.n_heads:
        raise WalkthroughError(f"Head {head} does not exist; this layer has heads 0–{walk.n_heads - 1}.")
    t, g, d = walk.tokens, walk.kv_head(head), walk.head_dim
    hd = _dims("d", d)
    d_model = _dims("d", walk.x.shape[1])
    shared = [h for h in range(walk.n_heads) if walk.kv_head(h) == g]
    sharing = (
        f" Key/value head {g} is shared by query heads {', '.join(map(str, shared))} (grouped-query attention)."
        if len(shared) > 1 else ""
    )  # fmt: skip
    result = [
        Step(
            "inputs", "Inputs X",
            "Each token is a vector of d_model numbers: the toy adds a sinusoidal position to a word vector."
            if not walk.rotary
            else "Each token's embedding, normalised by the layer's input norm: this is what attention reads.",
            (Matrix("X", walk.x, t, d_model),),
        ),
        Step(
            "projections", "Q = X·W_Q, K = X·W_K, V = X·W_V",
            f"Three learned matrices turn every token into a query, a key and a value; head {head} uses "
            f"{d} of the columns.{sharing}",
            (Matrix(f"Q (head {head})", walk.q_raw[head], t, hd), Matrix(f"K (kv head {g})", walk.k_raw[g], t, hd),
             Matrix(f"V (kv head {g})", walk.v[g], t, hd)),
        ),
    ]  # fmt: skip
    if walk.rotary:
        result.append(
            Step(
                "rotary", "Rotary position embedding",
                "RoPE rotates pairs of dimensions of Q and K by an angle proportional to the position, so Q·K "
                "depends on how far apart two tokens are.",
                (Matrix(f"Q rotated (head {head})", walk.q[head], t, hd),
                 Matrix(f"K rotated (kv head {g})", walk.k[g], t, hd)),
            )
        )  # fmt: skip
    scaled_note = f"×{walk.scale:.3g}" + (
        f" ÷ temperature {walk.temperature:g}" if walk.temperature != 1 else ""
    )
    blocked = int((~walk.mask).sum())
    head_outputs = walk.head_outputs[head]
    result += [
        Step("scores", "Scores Q·Kᵀ",
             "Row i, column j is how well query i matches key j: a dot product of two vectors.",
             (Matrix("Q·Kᵀ", walk.scores[head], t, t),)),
        scale_step(walk, head, d, scaled_note),
        Step("mask", f"Mask: {walk.mask_choice}",
             f"{blocked} of {walk.mask.size} entries are blocked (set to −∞, drawn empty), so softmax gives them 0."
             + (f" The last {walk.padding} tokens are padding." if walk.padding else ""),
             (Matrix("masked scores", walk.masked[head], t, t),)),
        Step("softmax", "Softmax, row by row",
             "Each row becomes weights that are positive and sum to 1: how much each query reads from each key.",
             (Matrix("attention weights", walk.weights[head], t, t, weights=True),)),
        Step("weighted", "Weights × V",
             "Each token's head output is the weighted average of the value vectors it attends to.",
             (Matrix(f"head {head} output", head_outputs, t, hd),)),
        Step("concat", "Concatenate heads",
             f"The {walk.n_heads} heads' outputs side by side: {walk.n_heads} × {d} = {walk.concat.shape[1]} numbers "
             "per token.",
             (Matrix("concatenated heads", walk.concat, t, _dims("c", walk.concat.shape[1])),)),
        Step("output", "Output projection W_O",
             "A last learned matrix mixes the heads back into d_model numbers, added to the residual stream.",
             (Matrix("attention output", walk.output, t, d_model),)),
    ]  # fmt: skip
    return tuple(result)
