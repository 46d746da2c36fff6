"""Agreement between attribution methods, and faithfulness of an attention ranking.

Agreement compares two rankings of the same passages (Spearman rank correlation, top-1
match). Faithfulness asks the model: removing the top attention-attributed passage should
hurt the answer's log-probability more than removing a random other one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Agreement:
    """How two methods' passage rankings agree: Spearman rank correlation and top-1 match."""

    spearman: float
    top1_match: bool


@dataclass(frozen=True)
class Faithfulness:
    """Answer log-prob drop from removing the top attention passage vs a random other passage."""

    top_passage: int
    top_drop: float
    random_passage: int
    random_drop: float
    mean_other_drop: float


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (0 when either is constant)."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement(scores: np.ndarray, reference: np.ndarray) -> Agreement:
    """Agreement of two [passages] score vectors: rank correlation and whether their top passage is the same."""
    return Agreement(
        spearman=spearman(scores, reference), top1_match=bool(np.argmax(scores) == np.argmax(reference))
    )


def faithfulness(scores: np.ndarray, drops: np.ndarray, seed: int = 0) -> Faithfulness:
    """Log-prob drop [passages] ``drops`` of the top-``scores`` passage vs a random (seeded) other passage."""
    top = int(np.argmax(scores))
    others = [i for i in range(len(scores)) if i != top] or [top]
    pick = random.Random(seed).choice(others)
    return Faithfulness(top, float(drops[top]), pick, float(drops[pick]), float(np.mean(drops[others])))
