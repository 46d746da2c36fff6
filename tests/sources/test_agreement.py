"""Agreement and faithfulness maths on hand-made score vectors."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.sources.agreement import agreement, faithfulness, spearman


def test_spearman_and_agreement() -> None:
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0, 30.0])) == pytest.approx(1.0)
    assert spearman(np.array([1.0, 2.0, 3.0]), np.array([3.0, 2.0, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1.0, 1.0, 1.0]), np.array([3.0, 2.0, 1.0])) == 0.0
    # ties get their average rank: ranks (1.5, 1.5, 3) vs (1, 2, 3)
    assert spearman(np.array([0.0, 0.0, 5.0]), np.array([1.0, 2.0, 3.0])) == pytest.approx(np.sqrt(3) / 2)
    agree = agreement(np.array([0.1, 0.7, 0.2]), np.array([0.5, 3.0, -0.1]))
    assert agree.top1_match and agree.spearman == pytest.approx(0.5)
    assert not agreement(np.array([0.9, 0.1]), np.array([0.0, 1.0])).top1_match


def test_faithfulness_picks_top_and_a_different_random_passage() -> None:
    drops = np.array([0.2, 5.0, -0.1, 0.4])
    result = faithfulness(np.array([0.1, 0.6, 0.2, 0.1]), drops, seed=3)
    assert result.top_passage == 1 and result.top_drop == pytest.approx(5.0)
    assert result.random_passage != 1 and result.random_drop == pytest.approx(drops[result.random_passage])
    assert result.mean_other_drop == pytest.approx(np.mean([0.2, -0.1, 0.4]))
