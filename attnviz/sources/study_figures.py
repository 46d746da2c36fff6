"""Figures of a citation study: share by passage and by position with 95% intervals, and the paired A/B change.

Passage ids are user text: every label goes through :func:`attnviz.views.figures.safe_label`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from attnviz.sources.study_stats import Interval, PairedChange, PassageSummary, PositionSummary
from attnviz.views.figures import axis, safe_label, styled


def _error_y(intervals: Sequence[Interval]) -> dict[str, object]:
    """Asymmetric error bars from each mean to its interval's ends."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [i.high - i.mean for i in intervals],
        "arrayminus": [i.mean - i.low for i in intervals],
    }


def passage_share_figure(passages: Sequence[PassageSummary], value_name: str) -> go.Figure:
    """One bar per passage (its share averaged over orders, then questions) with its 95% interval over questions."""
    labels = [safe_label(p.passage) for p in passages]
    intervals = [p.share for p in passages]
    bar = go.Bar(
        x=labels,
        y=[i.mean for i in intervals],
        error_y=_error_y(intervals),
        customdata=np.array([[i.low, i.high, p.top1_rate] for i, p in zip(intervals, passages, strict=True)]),
        hovertemplate="%{x}<br>mean %{y:.3f}<br>95% CI %{customdata[0]:.3f} to %{customdata[1]:.3f}"
        "<br>top-1 rate %{customdata[2]:.0%}<extra></extra>",
    )
    return styled(
        [bar], 320, title="Share by passage (averaged over positions)",
        xaxis=axis("passage", type="category"), yaxis=axis(value_name),
    )  # fmt: skip


def position_figure(positions: Sequence[PositionSummary], value_name: str) -> go.Figure:
    """The position-bias curve: mean share of whichever passage sits at each position, with a 95% band."""
    x = [p.position + 1 for p in positions]
    intervals = [p.share for p in positions]
    band = go.Scatter(
        x=x + x[::-1],
        y=[i.high for i in intervals] + [i.low for i in intervals][::-1],
        fill="toself", fillcolor="rgba(31, 119, 180, 0.18)", line={"width": 0}, hoverinfo="skip",
        name="95% CI", showlegend=False,
    )  # fmt: skip
    line = go.Scatter(
        x=x,
        y=[i.mean for i in intervals],
        mode="lines+markers",
        line={"color": "rgb(31, 119, 180)"},
        error_y=_error_y(intervals),
        hovertemplate="position %{x}<br>mean %{y:.3f}<extra></extra>",
        showlegend=False,
    )
    return styled(
        [band, line], 320, title="Share by position (1 = first passage in the prompt)",
        xaxis=axis("position", dtick=1), yaxis=axis(value_name),
    )  # fmt: skip


def paired_figure(change: PairedChange, questions: Sequence[str], value_name: str) -> go.Figure:
    """The rewritten passage's share before and after, one grey line per question (paired) and the mean in red."""
    traces = [
        go.Scatter(
            x=["before", "after"],
            y=[float(old), float(new)],
            mode="lines+markers",
            line={"color": "rgba(127, 127, 127, 0.5)"},
            name=safe_label(questions[q]),
            hovertemplate="%{fullData.name}<br>%{y:.3f}<extra></extra>",
            showlegend=False,
        )
        for q, old, new in zip(change.questions, change.shares_before, change.shares_after, strict=True)
    ]
    traces.append(
        go.Scatter(
            x=["before", "after"],
            y=[change.before.mean, change.after.mean],
            mode="lines+markers",
            line={"color": "rgb(214, 39, 40)", "width": 4},
            name="mean",
            hovertemplate="mean %{y:.3f}<extra></extra>",
            showlegend=False,
        )
    )
    return styled(
        traces, 320, title=f"{safe_label(change.passage)}: share before and after the rewrite, per question",
        xaxis=axis("", type="category"), yaxis=axis(value_name),
    )  # fmt: skip
