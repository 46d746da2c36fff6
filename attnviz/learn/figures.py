"""Plotly figures of the Learn page: labelled step matrices, online-softmax tiles, and the lesson curves.

Token labels pass :func:`attnviz.views.figures.safe_label`. ``large`` figures are for presenter mode:
bigger fonts and black-on-white, readable from the back of a room.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from attnviz.learn.lessons import Cost, PositionSimilarity, Saturation
from attnviz.learn.steps import Matrix
from attnviz.learn.variants import TileState
from attnviz.views.figures import safe_label

MAX_TEXT_COLUMNS = 18  # wider matrices (a model's 64-dimension heads) show numbers on hover only
WEIGHT_COLOURS = "Blues"
SIGNED_COLOURS = "RdBu_r"
MASKED_COLOUR = "#d9d9d9"


def readable(figure: go.Figure, large: bool, height: int | None = None, top: int = 50) -> go.Figure:
    """Common layout: tight margins (``top`` for the title); in presenter mode 20 px fonts and pure black text."""
    figure.update_layout(
        font={"size": 20 if large else 13, "color": "#000000" if large else None},
        margin={"l": 10, "r": 10, "t": top, "b": 10},
        paper_bgcolor="#ffffff",
    )
    if large:  # Streamlit's chart theme sets its own small fonts for ticks and titles: override them
        figure.update_xaxes(tickfont={"size": 18, "color": "#000000"}, title_font={"size": 18})
        figure.update_yaxes(tickfont={"size": 18, "color": "#000000"}, title_font={"size": 18})
        figure.update_layout(title_font={"size": 22, "color": "#000000"}, legend_font={"size": 18})
    if height is not None:
        figure.update_layout(height=height)
    return figure


def _labels(tokens: Sequence[str]) -> list[str]:
    """Unique, escaped axis labels: position and token ("2: cat"), so repeated words stay apart."""
    return [f"{i}: {safe_label(t)}" for i, t in enumerate(tokens)]


def _cell_text(values: np.ndarray) -> np.ndarray:
    """Numbers as shown in the cells: two decimals, −∞ for masked entries."""
    formatted = np.char.mod("%.2f", np.where(np.isfinite(values), values, 0.0))
    return np.where(np.isneginf(values), "−∞", formatted)


def step_matrix(matrix: Matrix, large: bool = False) -> go.Figure:
    """One step's matrix as a heatmap with its numbers in the cells (when small enough to read).

    Weights use a 0–1 scale; other matrices a diverging scale centred on 0; −∞ cells are grey.
    """
    values = np.asarray(matrix.values, dtype=np.float64)
    shown = np.where(np.isfinite(values), values, np.nan)
    rows = _labels(matrix.rows)
    cols = _labels(matrix.cols) if matrix.weights or matrix.cols == matrix.rows else list(matrix.cols)
    with_text = values.shape[1] <= MAX_TEXT_COLUMNS
    scale = {"zmin": 0.0, "zmax": 1.0, "colorscale": WEIGHT_COLOURS} if matrix.weights else {
        "zmid": 0.0, "colorscale": SIGNED_COLOURS,
    }  # fmt: skip
    figure = go.Figure(
        go.Heatmap(
            z=shown, x=cols, y=rows, text=_cell_text(values) if with_text else None,
            texttemplate="%{text}" if with_text else None,
            textfont={"size": 18 if large else 12},
            hovertemplate="row %{y}<br>column %{x}<br>value %{z:.4f}<extra></extra>",
            xgap=1 if with_text else 0, ygap=1, colorbar={"thickness": 12}, **scale,
        )
    )  # fmt: skip
    figure.update_yaxes(autorange="reversed", type="category", showgrid=False)
    figure.update_xaxes(type="category", side="top", tickangle=-45 if len(cols) > 8 else 0, showgrid=False)
    figure.update_layout(title=safe_label(matrix.name), plot_bgcolor=MASKED_COLOUR)
    figure.update_layout(title_y=0.98, title_yanchor="top")  # the title sits above the top tick labels
    height = min(400, 40 * len(rows) + 100) if large else min(620, max(260, 34 * len(rows) + 150))
    return readable(figure, large, height, top=75 if large else 90)


def tiles_figure(
    states: Sequence[TileState], upto: int, tokens: Sequence[str], large: bool = False
) -> go.Figure:
    """Scores seen after tile ``upto`` (1-based): later tiles are blank, the current one is outlined."""
    n, m = states[0].scores.shape[0], states[-1].stop
    seen = np.full((n, m), np.nan)
    for state in states[:upto]:
        scores = state.scores.numpy()
        seen[:, state.start : state.stop] = np.where(np.isfinite(scores), scores, np.nan)
    labels = _labels(tokens)
    figure = go.Figure(
        go.Heatmap(
            z=seen, x=labels[:m], y=labels[:n], colorscale=SIGNED_COLOURS, zmid=0.0, xgap=1, ygap=1,
            hovertemplate="query %{y}<br>key %{x}<br>scaled score %{z:.3f}<extra></extra>",
        )
    )  # fmt: skip
    current = states[upto - 1]
    figure.add_shape(
        type="rect", x0=current.start - 0.5, x1=current.stop - 0.5, y0=-0.5, y1=n - 0.5,
        line={"color": "#000000", "width": 4}, xref="x", yref="y",
    )  # fmt: skip
    figure.update_yaxes(autorange="reversed", type="category", showgrid=False)
    figure.update_xaxes(type="category", side="top", showgrid=False)
    figure.update_layout(title=f"Tile {upto} of {len(states)}: keys {current.start}–{current.stop - 1}")
    figure.update_layout(plot_bgcolor=MASKED_COLOUR)
    figure.update_layout(title_y=0.98, title_yanchor="top")
    return readable(figure, large, min(560, max(280, 36 * n + 160)), top=90)


def saturation_figure(result: Saturation, current_dim: int | None = None, large: bool = False) -> go.Figure:
    """Mean largest softmax weight against d_k, with and without 1/√d_k scaling."""
    figure = go.Figure()
    figure.add_scatter(x=list(result.dims), y=result.unscaled, name="without 1/√d_k", mode="lines+markers")
    figure.add_scatter(x=list(result.dims), y=result.scaled, name="with 1/√d_k", mode="lines+markers")
    if current_dim is not None:
        figure.add_vline(x=current_dim, line_dash="dot", annotation_text=f"d_k = {current_dim}")
    figure.update_xaxes(type="log", title="d_k (dimensions per head)")
    figure.update_yaxes(range=[0, 1.02], title="largest weight in a row")
    figure.update_layout(title="Without scaling, softmax saturates: one key takes (almost) everything")
    return readable(figure, large, 340)


def position_figure(result: PositionSimilarity, large: bool = False) -> go.Figure:
    """RoPE's q·k of the same vector at two positions against their distance, next to sinusoidal PE[0]·PE[d]."""
    figure = go.Figure()
    figure.add_scatter(x=result.distance, y=result.rotary, name="RoPE: q·k, same vector", mode="lines")
    figure.add_scatter(
        x=result.distance, y=result.sinusoidal, name="sinusoidal: PE[0]·PE[distance]", mode="lines"
    )
    figure.update_xaxes(title="distance between the two positions")
    figure.update_yaxes(title="similarity (1 at distance 0)")
    figure.update_layout(title="Both encodings make nearby positions more alike")
    return readable(figure, large, 340)


def cost_figure(cost: Cost, large: bool = False) -> go.Figure:
    """Measured time and score memory against length, next to O(n²) and O(n√n) curves through the last point."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("time (best run)", "score matrix memory"))
    n = np.array(cost.lengths, dtype=float)
    for column, (values, unit) in enumerate(
        ((cost.seconds * 1000, "ms"), (cost.score_bytes / 2**20, "MiB")), 1
    ):
        for i, kind in enumerate(cost.kinds):
            figure.add_scatter(
                x=n, y=values[i], name=kind, mode="lines+markers", legendgroup=kind, showlegend=column == 1,
                line={"color": ("#1f77b4", "#2ca02c", "#d62728")[i]}, row=1, col=column,
                hovertemplate=f"n=%{{x}}<br>%{{y:.3g}} {unit}<extra>{kind}</extra>",
            )  # fmt: skip
        guides = (("O(n²)", n**2, values[0, -1], "dot", "#555"), ("O(n√n)", n**1.5, values[-1, -1], "dash", "#9467bd"))
        for curve, shape, anchor, dash, colour in guides:
            figure.add_scatter(
                x=n, y=shape / shape[-1] * anchor, name=curve, mode="lines", line={"dash": dash, "color": colour},
                legendgroup=curve, showlegend=column == 1, row=1, col=column,
            )  # fmt: skip
        ticks = log_ticks(np.concatenate([values.ravel(), [g[1][0] / g[1][-1] * g[2] for g in guides]]))
        figure.update_xaxes(type="log", title="sequence length n", tickvals=list(n), ticktext=[f"{v:g}" for v in n],
                            row=1, col=column)  # fmt: skip
        figure.update_yaxes(type="log", title=unit, tickvals=ticks, ticktext=[f"{v:g}" for v in ticks], row=1, col=column)
    return readable(figure, large, 380)


def log_ticks(values: np.ndarray) -> list[float]:
    """Ticks 1, 2, 5 × 10^k spanning ``values`` (positive ones), each labelled with its full value.

    Plotly's own log ticks inside a decade or two read "2, 5, 2" with no scale.
    """
    positive = values[values > 0]
    low, high = np.floor(np.log10(positive.min())), np.ceil(np.log10(positive.max()))
    ticks = [m * 10.0**k for k in range(int(low), int(high) + 1) for m in (1, 2, 5)]
    return [t for t in ticks if positive.min() / 2 <= t <= positive.max() * 2]
