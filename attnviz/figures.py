"""Plotly figures shared by the pages: heatmaps over tokens and per-token bars.

Token labels are user text: plotly renders a subset of HTML in labels, so every
label passes :func:`safe_label`. Axes are numeric with tick text, because a
categorical axis would merge repeated tokens ("the" twice) into one column.
Large matrices are block-averaged to at most ``max_cells`` per side so the browser
never receives more than a few hundred thousand cells.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

MAX_CELLS = 256


def visible_text(token: str) -> str:
    """Token text with newlines, tabs and all-blank tokens made visible (no escaping)."""
    shown = token.replace("\n", "⏎").replace("\t", "⇥")
    if shown.strip() == "":
        shown = "␣" * max(1, len(shown))
    return shown


def safe_label(token: str) -> str:
    """Token text as plotly shows it literally: HTML escaped, whitespace made visible."""
    return html.escape(visible_text(token), quote=False)


def downsample(matrix: np.ndarray, max_cells: int = MAX_CELLS) -> tuple[np.ndarray, int]:
    """Block-average a [rows, cols] matrix so neither side exceeds ``max_cells``; returns (matrix, block)."""
    block = int(np.ceil(max(matrix.shape) / max_cells)) if max(matrix.shape) > max_cells else 1
    if block == 1:
        return matrix, 1
    rows = int(np.ceil(matrix.shape[0] / block)) * block
    cols = int(np.ceil(matrix.shape[1] / block)) * block
    padded = np.full((rows, cols), np.nan, dtype=np.float32)
    padded[: matrix.shape[0], : matrix.shape[1]] = matrix
    blocks = padded.reshape(rows // block, block, cols // block, block)
    return np.nanmean(blocks, axis=(1, 3)), block


def _tick_labels(tokens: Sequence[str], block: int) -> tuple[list[int], list[str], list[str]]:
    """Tick positions/texts and per-cell hover labels for (possibly block-averaged) tokens."""
    if block == 1:
        labels = [f"{i}: {safe_label(t)}" for i, t in enumerate(tokens)]
        return list(range(len(tokens))), [safe_label(t) for t in tokens], labels
    cells = int(np.ceil(len(tokens) / block))
    hover = [f"tokens {c * block}–{min(len(tokens), (c + 1) * block) - 1}" for c in range(cells)]
    return [], [], hover


def attention_heatmap(
    weights: np.ndarray,
    query_tokens: Sequence[str],
    key_tokens: Sequence[str],
    *,
    title: str = "",
    colorscale: str = "Viridis",
    log_scale: bool = False,
    max_cells: int = MAX_CELLS,
    value_name: str = "weight",
) -> go.Figure:
    """Heatmap of a [queries, keys] matrix: queries down, keys across, tokens on the axes."""
    matrix, block = downsample(np.asarray(weights, dtype=np.float32), max_cells)
    shown = np.log10(np.clip(matrix, 1e-6, None)) if log_scale else matrix
    x_ticks, x_text, x_hover = _tick_labels(key_tokens, block)
    y_ticks, y_text, y_hover = _tick_labels(query_tokens, block)
    hover = np.array([[f"query {q}<br>key {k}" for k in x_hover] for q in y_hover], dtype=object)
    figure = go.Figure(
        go.Heatmap(
            z=shown,
            customdata=np.dstack([hover, matrix]),
            hovertemplate="%{customdata[0]}<br>" + value_name + " %{customdata[1]:.4f}<extra></extra>",
            colorscale=colorscale,
            colorbar={"title": f"log10 {value_name}" if log_scale else value_name},
        )
    )
    figure.update_yaxes(autorange="reversed", tickvals=y_ticks, ticktext=y_text, title="query")
    figure.update_xaxes(tickvals=x_ticks, ticktext=x_text, tickangle=-60, title="key", side="bottom")
    subtitle = f" (block-averaged {block}×{block})" if block > 1 else ""
    figure.update_layout(title=title + subtitle, margin={"l": 10, "r": 10, "t": 40, "b": 10}, height=560)
    return figure


def token_bar(values: np.ndarray, tokens: Sequence[str], *, title: str = "", value_name: str = "weight") -> go.Figure:
    """Bar per token (e.g. how much the last token reads from each earlier token)."""
    labels = [f"{i}: {safe_label(t)}" for i, t in enumerate(tokens)]
    figure = go.Figure(
        go.Bar(
            x=list(range(len(tokens))),
            y=np.asarray(values, dtype=np.float32),
            customdata=labels,
            hovertemplate="%{customdata}<br>" + value_name + " %{y:.4f}<extra></extra>",
        )
    )
    figure.update_xaxes(
        tickvals=list(range(len(tokens))) if len(tokens) <= 80 else None,
        ticktext=[safe_label(t) for t in tokens] if len(tokens) <= 80 else None,
        tickangle=-60,
    )
    figure.update_layout(title=title, yaxis_title=value_name, margin={"l": 10, "r": 10, "t": 40, "b": 10}, height=320)
    return figure
