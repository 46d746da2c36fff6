"""Head statistics on hand-made attention maps with known answers, and on real SmolLM2."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.heads import stats

N = 6


def causal_uniform(n: int = N) -> np.ndarray:
    """Each query spreads evenly over itself and every earlier token: [1, 1, n, n]."""
    matrix = np.tril(np.ones((n, n)))
    return (matrix / matrix.sum(-1, keepdims=True))[None, None]


def previous_token(n: int = N) -> np.ndarray:
    """Each query attends fully to the token before it (query 0 to itself): [1, 1, n, n]."""
    matrix = np.eye(n, k=-1)
    matrix[0, 0] = 1
    return matrix[None, None]


def test_entropy_of_uniform_and_focused_heads() -> None:
    expected = np.mean([np.log2(i + 1) for i in range(N)])
    assert stats.entropy(causal_uniform())[0, 0] == pytest.approx(expected)
    assert stats.entropy(np.eye(N)[None, None])[0, 0] == pytest.approx(0.0)


def test_mean_distance_and_first_token_mass() -> None:
    # Query i spreads over 0..i: mean distance i/2, mass on key 0 is 1/(i+1).
    assert stats.mean_distance(causal_uniform())[0, 0] == pytest.approx(np.mean([i / 2 for i in range(N)]))
    assert stats.first_token_mass(causal_uniform())[0, 0] == pytest.approx(
        np.mean([1 / (i + 1) for i in range(N)])
    )
    assert stats.mean_distance(previous_token())[0, 0] == pytest.approx((N - 1) / N)


def test_previous_token_score() -> None:
    assert stats.previous_token_score(previous_token())[0, 0] == pytest.approx(1.0)
    assert stats.previous_token_score(np.eye(N)[None, None])[0, 0] == pytest.approx(0.0)
    assert stats.previous_token_score(causal_uniform())[0, 0] == pytest.approx(
        np.mean([1 / (i + 1) for i in range(1, N)])
    )


def test_induction_score_of_a_perfect_induction_head() -> None:
    period, start = 4, 1  # BOS + 4 tokens + the same 4 tokens
    n = start + 2 * period
    perfect = np.zeros((n, n))
    perfect[:, 0] = 1  # first copy: rest on BOS
    for query in range(start + period, n):
        perfect[query] = 0
        perfect[query, query - period + 1] = 1
    both = np.stack([perfect, previous_token(n)[0, 0]])[None]
    scores = stats.induction_score(both, period, start)
    assert scores[0, 0] == pytest.approx(1.0)
    assert scores[0, 1] == pytest.approx(0.0)


def test_head_stats_rows_export_every_head() -> None:
    attention = np.concatenate([causal_uniform(), previous_token()], axis=1)  # [1 layer, 2 heads]
    result = stats.head_stats(attention, layers=(3,), heads=(0, 1))
    rows = result.rows()
    assert [(r["layer"], r["head"]) for r in rows] == [(3, 0), (3, 1)]
    assert rows[1]["previous_token"] == pytest.approx(1.0)
    assert "induction" not in rows[0]


def test_repeated_random_tokens_repeat_and_avoid_special_tokens(smollm2) -> None:
    ids, start = stats.repeated_random_tokens(smollm2, period=20, seed=3)
    body = ids[start:]
    assert body[:20] == body[20:] and len(set(body[:20])) == 20
    assert not set(body) & set(smollm2.tokenizer.all_special_ids)


def test_smollm2_has_induction_heads(smollm2) -> None:
    scores = stats.induction_scores(smollm2)
    assert scores.shape == (30, 9)
    assert scores.max() > 0.5
    assert np.median(scores) < 0.1  # most heads are not induction heads


def test_real_trace_statistics_are_in_range(smollm2) -> None:
    from attnviz.tracing.trace import trace as trace_prompt

    trace = trace_prompt(smollm2, "One two three four five six seven eight nine ten")
    result = stats.head_stats(trace.attention, trace.layers, trace.heads)
    assert result.entropy.shape == (30, 9)
    assert (result.entropy >= 0).all() and (result.entropy <= np.log2(trace.n_tokens) + 1e-6).all()
    assert (result.first_token >= 0).all() and (result.first_token <= 1 + 1e-6).all()
    assert result.previous_token.max() > 0.5  # SmolLM2 has previous-token heads


def test_cross_attention_gets_only_position_free_statistics() -> None:
    rectangular = np.full((1, 1, 2, 5), 0.2)  # 2 decoder queries over 5 encoder keys
    result = stats.head_stats(rectangular, layers=(0,), heads=(0,), self_attention=False)
    assert result.distance is None and result.previous_token is None
    assert result.entropy[0, 0] == pytest.approx(np.log2(5))
    assert set(result.rows()[0]) == {"layer", "head", "entropy", "first_token"}
