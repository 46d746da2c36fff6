"""Figures of the head atlas: the layer × head grid coloured by role, and one head's distributions."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from attnviz.heads.atlas import Atlas
from attnviz.heads.compare import Comparison
from attnviz.heads.roles import ROLES
from attnviz.views.figures import axis, safe_label, styled

ROLE_COLOURS = {
    "previous-token": "#1f77b4", "induction": "#d62728", "duplicate-token": "#9467bd", "first-token sink": "#7f7f7f",
    "local": "#2ca02c", "broad": "#ff7f0e", "retrieval": "#e377c2", "none": "#e6e8ee",
}  # fmt: skip


def main_role(atlas: Atlas, layer: int, head: int) -> str:
    """The role a head's cell is coloured by: its first in :data:`ROLES` order (specific before generic), or none."""
    held = atlas.head_roles(layer, head)
    return held[0] if held else "none"


def role_grid_figure(atlas: Atlas, selected: tuple[int, int] | None = None) -> go.Figure:
    """Layers across, heads down, one square per head coloured by its main role; hover lists all its roles.

    Each role is one trace (so the legend names the colours); a point's customdata is (layer, head) for clicks.
    """
    traces = []
    for role in [*(r.name for r in ROLES), "none"]:
        cells = [(layer, head) for layer in atlas.layers for head in atlas.heads if main_role(atlas, layer, head) == role]
        if not cells:
            continue
        hover = [", ".join(atlas.head_roles(layer, head)) or "no role" for layer, head in cells]
        traces.append(
            go.Scatter(
                x=[c[0] for c in cells], y=[c[1] for c in cells], mode="markers", name=role,
                marker={"symbol": "square", "size": 18, "color": ROLE_COLOURS[role], "line": {"width": 1, "color": "#555"}},
                customdata=[[layer, head, text] for (layer, head), text in zip(cells, hover, strict=True)],
                hovertemplate="layer %{customdata[0]}, head %{customdata[1]}<br>%{customdata[2]}<extra></extra>",
            )
        )  # fmt: skip
    if selected is not None:
        traces.append(
            go.Scatter(
                x=[selected[0]], y=[selected[1]], mode="markers", name="selected", showlegend=False, hoverinfo="skip",
                marker={"symbol": "square-open", "size": 28, "color": "black", "line": {"width": 3}},
            )
        )  # fmt: skip
    height = int(np.clip(26 * len(atlas.heads) + 140, 300, 700))
    return styled(
        traces, height, showlegend=True, clickmode="event+select", dragmode=False,
        xaxis=axis("layer", tickvals=list(atlas.layers), ticktext=[f"L{x}" for x in atlas.layers], zeroline=False),
        yaxis=axis("head", tickvals=list(atlas.heads), ticktext=[f"H{h}" for h in atlas.heads], autorange="reversed",
                   zeroline=False),
        legend={"orientation": "h", "y": -0.15},
    )  # fmt: skip


def head_distributions(atlas: Atlas, layer: int, head: int, marks: tuple[Comparison, ...] = ()) -> go.Figure:
    """One box per statistic of the head's values over the prompts that measure it, with its mean and 95% interval.

    With ``marks`` (a prompt against the corpus), only their statistics, each with the prompt's value as a red line.
    """
    li, hi = atlas.layers.index(layer), atlas.heads.index(head)
    names = tuple(mark.statistic for mark in marks) or atlas.statistics
    figure = make_subplots(rows=1, cols=len(names), subplot_titles=names)
    labels = [safe_label(p.label) for p in atlas.prompts]
    for column, name in enumerate(names, start=1):
        si = atlas.statistics.index(name)
        values = atlas.values[:, li, hi, si]
        measured = ~np.isnan(values)
        figure.add_trace(
            go.Box(
                y=values[measured], boxpoints="all", jitter=0.4, pointpos=0, name=name, marker={"size": 4},
                customdata=[labels[i] for i in np.flatnonzero(measured)], showlegend=False,
                hovertemplate="%{customdata}<br>%{y:.3f}<extra></extra>",
            ),
            row=1, col=column,
        )  # fmt: skip
        mean, low, high = (float(a[li, hi, si]) for a in (atlas.mean, atlas.low, atlas.high))
        figure.add_trace(
            go.Scatter(
                x=[name], y=[mean], mode="markers", marker={"color": "black", "size": 9, "symbol": "diamond"},
                error_y={"type": "data", "symmetric": False, "array": [high - mean], "arrayminus": [mean - low]},
                showlegend=False, hovertemplate=f"mean {mean:.3f}<br>95% interval {low:.3f}–{high:.3f}<extra></extra>",
            ),
            row=1, col=column,
        )  # fmt: skip
    for column, mark in enumerate(marks, start=1):
        figure.add_hline(
            y=mark.value, line={"color": "#d62728", "width": 3}, row=1, col=column,
            annotation={"text": f"this prompt {mark.value:.3f} · percentile {mark.percentile:.0f}",
                        "font": {"color": "#d62728"}},
        )  # fmt: skip
    figure.update_xaxes(showticklabels=False)
    return figure.update_layout(
        height=340, margin={"l": 40, "r": 10, "t": 50, "b": 20}, template="plotly_white"
    )
