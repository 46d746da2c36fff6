"""Plotly figures shared by the pages: heatmaps over tokens and per-token bars.

Token labels are user text: plotly renders a subset of HTML in labels, so every
label passes :func:`safe_label`. Axes are numeric with tick text, because a
categorical axis would merge repeated tokens ("the" twice) into one column.
Large matrices are block-averaged to at most ``max_cells`` per side so the browser
never receives more than a few hundred thousand cells.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from attnviz.grid import HeadGrid

MAX_CELLS = 256


def _visible_char(char: str) -> str:
    """A character as a label can show it: invisible ones (zero-width, bidi controls) as ``⟨U+200B⟩``."""
    if char in "\n\t":
        return "⏎" if char == "\n" else "⇥"
    if unicodedata.category(char) in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp"):
        return f"⟨U+{ord(char):04X}⟩"
    return char


def visible_text(token: str) -> str:
    """Token text as every view shows it (no escaping): newlines, tabs, blank, zero-width and bidi
    control characters made visible; a leading combining mark drawn on a dotted circle ``◌́``."""
    shown = "".join(_visible_char(char) for char in token)
    if shown.strip() == "":
        shown = "␣" * max(1, len(shown))
    if shown and unicodedata.combining(shown[0]):
        shown = "◌" + shown
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
    return np.nanmean(blocks, axis=(1, 3)).astype(np.float32), block


def _axis_labels(tokens: Sequence[str], block: int) -> tuple[list[str], list[str]]:
    """Unique category labels per cell (what hover shows) and tick texts (empty when block-averaged).

    Labels carry the position ("3: the"), so repeated tokens stay separate columns.
    """
    if block == 1:
        return [f"{i}: {safe_label(t)}" for i, t in enumerate(tokens)], [safe_label(t) for t in tokens]
    cells = int(np.ceil(len(tokens) / block))
    return [f"tokens {c * block}–{min(len(tokens), (c + 1) * block) - 1}" for c in range(cells)], []


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
    """Heatmap of a [queries, keys] matrix: queries down, keys across, tokens on the axes.

    Hover text comes from the axis labels and the cell's number (sent as a binary
    float32 array), so the payload grows with the cells' numbers, not with strings per cell.
    """
    matrix, block = downsample(np.asarray(weights, dtype=np.float32), max_cells)
    shown = np.log10(np.clip(matrix, 1e-6, None)) if log_scale else matrix
    x_labels, x_text = _axis_labels(key_tokens, block)
    y_labels, y_text = _axis_labels(query_tokens, block)
    figure = go.Figure(
        go.Heatmap(
            z=shown,
            x=x_labels,
            y=y_labels,
            # Log scale colours log10 values; hover still shows the weight itself.
            customdata=matrix if log_scale else None,
            hovertemplate="query %{y}<br>key %{x}<br>" + value_name
            + (" %{customdata:.4f}" if log_scale else " %{z:.4f}") + "<extra></extra>",
            colorscale=colorscale,
            colorbar={"title": f"log10 {value_name}" if log_scale else value_name},
        )
    )
    figure.update_yaxes(
        autorange="reversed", type="category", tickvals=y_labels if y_text else [], ticktext=y_text, title="query"
    )
    figure.update_xaxes(
        type="category", tickvals=x_labels if x_text else [], ticktext=x_text, tickangle=-60, title="key",
        side="bottom",
    )  # fmt: skip
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


def head_grid_figure(grid: HeadGrid, *, selected: tuple[int, int] | None = None, colorscale: str = "Viridis") -> go.Figure:
    """Every head's thumbnail in one heatmap (layers across, heads down), with a clickable point per head.

    Clicking a head selects its point, whose customdata is (layer, head).
    """
    names = [(layer, head) for layer in grid.layers for head in grid.heads]
    centres = [grid.cell(li, hi) for li in range(len(grid.layers)) for hi in range(len(grid.heads))]
    figure = go.Figure(
        [
            go.Heatmap(z=grid.mosaic, colorscale=colorscale, showscale=False, hoverinfo="skip", zmin=0, zmax=1),
            go.Scatter(
                x=[c[0] for c in centres],
                y=[c[1] for c in centres],
                mode="markers",
                marker={"size": 16, "symbol": "square", "opacity": 0.0, "color": "white"},
                customdata=[list(name) for name in names],
                hovertemplate="layer %{customdata[0]}, head %{customdata[1]}<extra></extra>",
                showlegend=False,
            ),
        ]
    )
    figure.update_xaxes(
        tickvals=[grid.cell(li, 0)[0] for li in range(len(grid.layers))], ticktext=[f"L{x}" for x in grid.layers],
        title="layer", showgrid=False, zeroline=False, side="top", range=[-1, grid.mosaic.shape[1]],
    )  # fmt: skip
    figure.update_yaxes(
        tickvals=[grid.cell(0, hi)[1] for hi in range(len(grid.heads))], ticktext=[f"H{h}" for h in grid.heads],
        title="head", showgrid=False, zeroline=False, autorange="reversed", scaleanchor="x",
    )  # fmt: skip
    if selected in names:
        x, y = grid.cell(grid.layers.index(selected[0]), grid.heads.index(selected[1]))
        half = grid.size / 2 + 0.5
        figure.add_shape(
            type="rect", x0=x - half, x1=x + half, y0=y - half, y1=y + half, line={"color": "red", "width": 3}
        )
    rows, cols = grid.mosaic.shape
    figure.update_layout(
        height=max(240, int(80 + 1050 * rows / max(cols, 1))),
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        clickmode="event+select",
        dragmode=False,
    )
    return figure


def layer_head_heatmap(
    values: np.ndarray, layers: Sequence[int], heads: Sequence[int], *, title: str = "", value_name: str = "value"
) -> go.Figure:
    """A [layers, heads] statistic as a heatmap: heads across, layers down."""
    figure = go.Figure(
        go.Heatmap(
            z=np.asarray(values, dtype=np.float32),
            x=[f"H{h}" for h in heads],
            y=[f"L{layer}" for layer in layers],
            colorscale="Viridis",
            colorbar={"title": value_name},
            hovertemplate="%{y} %{x}<br>" + value_name + " %{z:.3f}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(title=title, height=max(300, 18 * len(layers) + 80), margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


MASK_COLORS = [[0.0, "#eef1f6"], [1.0, "#27557f"]]


def mask_heatmap(
    allowed: np.ndarray, query_tokens: Sequence[str], key_tokens: Sequence[str], *, title: str = ""
) -> go.Figure:
    """Boolean [queries, keys] mask over tokens: dark cells may be attended, light ones are blocked."""
    figure = attention_heatmap(
        np.asarray(allowed, dtype=np.float32), query_tokens, key_tokens,
        title=title, colorscale=MASK_COLORS, value_name="allowed",
    )  # fmt: skip
    figure.update_traces(showscale=False, zmin=0.0, zmax=1.0, xgap=1, ygap=1)
    figure.update_layout(height=460)
    return figure


def passage_bar(scores: np.ndarray, value_name: str, title: str = "") -> go.Figure:
    """One bar per passage, labelled [1], [2], …"""
    labels = [f"[{i + 1}]" for i in range(len(scores))]
    figure = go.Figure(go.Bar(x=labels, y=scores, hovertemplate="passage %{x}<br>%{y:.4f}<extra></extra>"))
    figure.update_layout(
        title=title, yaxis_title=value_name, height=260, margin={"l": 10, "r": 10, "t": 40, "b": 10}
    )
    return figure


def highlighted_passages(passages: Sequence[str], scores: np.ndarray, colour: str) -> str:
    """HTML of the passages with a background whose strength follows the score; all text escaped.

    Every passage is one ``<div>`` on one line, so no blank line inside user text can end the
    HTML block and let the rest be read as Markdown.
    """
    top = float(np.max(np.abs(scores))) or 1.0
    blocks = []
    for index, (passage, score) in enumerate(zip(passages, scores, strict=True)):
        alpha = max(0.0, float(score) / top) * 0.55
        text = html.escape(passage).replace("\n", "<br>")
        blocks.append(
            f'<div style="background: rgba({colour}, {alpha:.3f}); border-left: 4px solid rgba({colour}, 0.9); '
            f'padding: 6px 10px; margin: 4px 0; border-radius: 4px;">'
            f"<b>[{index + 1}]</b> <small>score {score:.3f}</small><br>{text}</div>"
        )
    return "".join(blocks)
