"""attnviz.learn.lessons: saturation, position similarity, KV-cache layouts, sparse attention and its cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnviz.learn import lessons, variants
from attnviz.learn.figures import cost_figure


def test_saturation_grows_without_scaling_only() -> None:
    result = lessons.saturation()
    assert np.all(np.diff(result.unscaled) > 0) and result.unscaled[-1] > 0.9
    assert result.scaled.max() < 0.5


def test_position_similarity_starts_at_one_and_decays() -> None:
    result = lessons.position_similarity(d=32, max_distance=64)
    assert result.rotary[0] == pytest.approx(1) and result.sinusoidal[0] == pytest.approx(1)
    assert result.rotary[1:].max() < 1 and result.sinusoidal[1:].max() < 1
    assert len(result.distance) == 65


def test_kv_cache_layouts_for_smollm2_shape() -> None:
    rows = lessons.kv_cache_layouts(n_layers=30, n_heads=9, n_kv_heads=3, head_dim=64, tokens=2048)
    assert [r.n_kv_heads for r in rows] == [9, 3, 1]
    assert rows[1].bytes == 2 * 30 * 3 * 64 * 2048 * 2 and rows[0].bytes == 3 * rows[1].bytes


@pytest.mark.parametrize("kind", lessons.COST_KINDS)
def test_gathered_attention_equals_dense_masked_attention(kind: str) -> None:
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(37, 8, generator=generator) for _ in range(3))
    allowed = lessons.sparse_pattern(kind, 37)
    expected, _ = variants.scaled_dot_product(q, k, v, allowed)
    torch.testing.assert_close(lessons.gathered_attention(q, k, v, allowed), expected)


def test_measure_cost_reports_every_kind_and_length() -> None:
    seen: list[float] = []
    cost = lessons.measure_cost(lengths=(16, 64), head_dim=8, repeats=1, progress=seen.append)
    assert cost.seconds.shape == (3, 2) and (cost.seconds > 0).all()
    assert seen[-1] == 1.0 and len(seen) == 6
    assert cost.score_bytes[0].tolist() == [4 * 16 * 16, 4 * 64 * 64]
    assert (cost.score_bytes[1:, 1] < cost.score_bytes[0, 1]).all()  # sparse kinds allocate fewer scores


def test_measure_cost_warms_up_before_its_timed_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each kind at each length runs once untimed, then ``repeats`` timed: a cold first call (13 ms at n = 128
    against 0.5 ms at 256 on a fresh server) must never be the figure shown."""
    calls: list[tuple[str, int]] = []
    attention = lessons._attention_of

    def counted(kind: str, q: torch.Tensor, *rest: object) -> torch.Tensor:
        calls.append((kind, q.shape[0]))
        return attention(kind, q, *rest)

    monkeypatch.setattr(lessons, "_attention_of", counted)
    lessons.measure_cost(lengths=(16, 64), head_dim=8, repeats=3)
    expected = [(kind, n) for n in (16, 64) for kind in lessons.COST_KINDS for _ in range(3 + 1)]
    assert calls == expected


def test_toy_cross_attention_reads_the_other_sentence() -> None:
    result = lessons.toy_cross_attention("the cat sleeps", "le chat dort bien")
    assert result.weights.shape == (2, 3, 4) and result.keys == ("le", "chat", "dort", "bien")
    assert np.allclose(result.weights.sum(-1), 1)


def test_cost_axes_read_as_numbers_and_guides_differ() -> None:
    """Every log tick carries its full value (not "2, 5, 2"); the two guide curves look different."""
    cost = lessons.Cost(
        (128, 256, 512, 1024), lessons.COST_KINDS,
        np.array([[2e-4, 6e-4, 2.5e-3, 1e-2], [1e-4, 2e-4, 4e-4, 9e-4], [1e-4, 2e-4, 5e-4, 1.2e-3]]),
        np.array([[65536, 262144, 1048576, 4194304], [4096, 11585, 32768, 92681], [4096, 11585, 32768, 92681]]),
    )  # fmt: skip
    figure = cost_figure(cost)
    time_axis = figure.layout.yaxis
    labels = [float(text) for text in time_axis.ticktext]
    assert labels == list(time_axis.tickvals) and min(labels) <= 0.1 and max(labels) >= 10  # ms, full values
    memory_axis = figure.layout.yaxis2
    assert [float(text) for text in memory_axis.ticktext] == list(memory_axis.tickvals)  # MiB, full values
    for length_axis in (figure.layout.xaxis, figure.layout.xaxis2):
        assert list(length_axis.ticktext) == ["128", "256", "512", "1024"]
    guides = {trace.name: trace.line for trace in figure.data if trace.name.startswith("O(")}
    assert guides["O(n²)"].dash != guides["O(n√n)"].dash and guides["O(n²)"].color != guides["O(n√n)"].color
