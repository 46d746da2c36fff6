"""Where a head's role shows most in the atlas's corpus: the prompts with the strongest statistic, and in
one prompt the query position where it peaks (the only full map drawn is that one head's, on demand)."""

from __future__ import annotations

import numpy as np
import torch

from attnviz.heads.atlas import Atlas
from attnviz.heads.corpus import CorpusPrompt, token_matches
from attnviz.heads.roles import ROLES
from attnviz.models.loading import LoadedModel
from attnviz.tracing.tokens import display_tokens
from attnviz.tracing.trace import record


def role_statistic(role: str) -> tuple[str, bool]:
    """(statistic, higher is stronger) that shows a role. Retrieval heads have no corpus statistic (the
    calibration finds them on passages): they are shown where their attention is sharpest (lowest entropy)."""
    found = next(r for r in ROLES if r.name == role)
    return (found.statistic, found.above) if found.statistic is not None else ("entropy", False)


def strongest_prompts(atlas: Atlas, layer: int, head: int, statistic: str, above: bool, k: int = 3) -> list[int]:
    """Indices of the ``k`` prompts where ``statistic`` of the head is strongest (prompts that measure it)."""
    values = atlas.values[:, atlas.layers.index(layer), atlas.heads.index(head), atlas.statistics.index(statistic)]
    measured = np.flatnonzero(~np.isnan(values))
    order = measured[np.argsort(-values[measured] if above else values[measured], kind="stable")]
    return [int(i) for i in order[:k]]


def head_map(loaded: LoadedModel, prompt: CorpusPrompt, layer: int, head: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """One head's [n, n] attention on a corpus prompt (one forward pass recording only it) and its tokens."""
    ids = torch.tensor([prompt.ids])
    _, recording = record(loaded, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, layers=[layer],
                          heads=[head], last_logits_only=True)  # fmt: skip
    tokens, _ = display_tokens(loaded.tokenizer, list(prompt.ids))
    return recording.weights[loaded.main_stack][0, 0, 0], tokens


def row_scores(weights: np.ndarray, prompt: CorpusPrompt, statistic: str, causal: bool) -> np.ndarray:
    """[n] the statistic per query row of one head's [n, n] map (NaN where a row has nothing to measure)."""
    n = weights.shape[-1]
    p = np.asarray(weights, dtype=np.float64)
    if statistic in ("induction", "duplicate"):
        duplicate, induction = token_matches(prompt.ids)
        mask = induction if statistic == "induction" else duplicate
        return np.where(mask.any(-1), (p * mask).sum(-1), np.nan)
    if statistic == "previous_token":
        return np.concatenate([[np.nan], p[np.arange(1, n), np.arange(n - 1)]])
    if statistic == "first_token":
        return p[:, 0]
    if statistic == "distance":
        return (p * np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum(-1)
    if statistic == "entropy":
        return entropy
    visible = np.arange(1, n + 1) if causal else np.full(n, n)
    return np.where(visible > 1, entropy / np.log2(np.maximum(visible, 2)), np.nan)


def peak_row(scores: np.ndarray, above: bool) -> int:
    """The query row where a row statistic is strongest (NaN rows skipped)."""
    return int(np.nanargmax(scores) if above else np.nanargmin(scores))
