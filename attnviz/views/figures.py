"""Plotly figures shared by the pages: heatmaps over tokens and per-token bars.

Token labels are user text: plotly renders a subset of HTML in labels, so every
label passes :func:`safe_label`. Axes are numeric with tick text, because a
categorical axis would merge repeated tokens ("the" twice) into one column.
Large matrices are block-averaged to at most ``max_cells`` per side so the browser
never receives more than a few hundred thousand cells.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
import textwrap
import unicodedata
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.colors import get_colorscale, sample_colorscale, unlabel_rgb

from attnviz.heads.grid import HeadGrid

MAX_CELLS = 256
TEXT_COLOUR = "#1f2430"  # near-black: readable on a projector, unlike plotly's light grey ticks
FONT = {"size": 14, "color": TEXT_COLOUR}
TICK_FONT = {"size": 13, "color": TEXT_COLOUR}
TITLE_FONT = {"size": 16, "color": TEXT_COLOUR}
LABEL_ROOM = 64  # most token labels an axis of a full-width figure shows before labelling every k-th
LABEL_PX = 17
STEEP_LABELS = 32  # more key labels than this stand upright: a 13 px label slanted at 60° needs 15 px
COLORBAR_TITLE_CHARS = 12  # a colour bar's title column is about this wide at 14 px
GRID_WIDTH, GRID_MAX_HEIGHT = 800, 440  # vertical pixels one query label needs


def _visible_char(char: str) -> str:
    """A character as a label can show it: invisible ones (zero-width, bidi controls) as ``⟨U+200B⟩``."""
    if char in "\n\t":
        return "⏎" if char == "\n" else "⇥"
    if unicodedata.category(char) in ("Cf", "Cc", "Co", "Cn", "Zl", "Zp"):
        return f"⟨U+{ord(char):04X}⟩"
    return char


def visible_text(token: str) -> str:
    """Token text as every view shows it (no escaping): newlines, tabs, blank, zero-width and bidi
    control characters made visible; a leading combining mark drawn on a dotted circle ``◌́``;
    right-to-left text fenced by left-to-right marks so its piece markers stay on its right."""
    shown = "".join(_visible_char(char) for char in token)
    if shown.strip() == "":
        shown = "␣" * max(1, len(shown))
    if shown and unicodedata.combining(shown[0]):
        shown = "◌" + shown
    if any(unicodedata.bidirectional(char) in ("R", "AL") for char in shown):
        # Left-to-right marks keep "ש⟨1/2⟩" in that order inside left-to-right labels (plotly's SVG text
        # ignores bidi isolates).
        shown = "\u200e" + shown.replace("⟨", "\u200e⟨") + "\u200e"
    return shown


def safe_label(token: str) -> str:
    """Token text as plotly shows it literally: HTML escaped, whitespace made visible."""
    return html.escape(visible_text(token), quote=False)


def axis(title: str = "", **settings: object) -> dict[str, object]:
    """An axis with the shared tick and title fonts, its margin grown to fit its labels.

    Tick labels may overflow the plot (``ticklabeloverflow="allow"``): plotly's default for numeric axes
    ("hide past div") measures every label once per label drawn, 440 ms of a first view's 1 s of
    drawing in Chromium with 64 token labels (profiled).
    """
    return {
        "tickfont": TICK_FONT, "automargin": True, "ticklabeloverflow": "allow", "title": {"text": title, "font": FONT},
        **settings,
    }  # fmt: skip


def styled(
    data: object,
    height: int,
    *,
    top: int = 40,
    title: str = "",
    xaxis: dict[str, object] | None = None,
    yaxis: dict[str, object] | None = None,
    **layout: object,
) -> go.Figure:
    """A figure built in one validation pass with the fonts, contrast and margins every figure shares.

    Each ``update_*`` call validates the figure again: one pass is about 7x faster (27 ms -> 4 ms
    for a heatmap, measured), which a class of thirty sessions redrawing Explore feels.
    """
    return go.Figure(
        data,
        layout={
            "font": FONT, "title": {"text": title, "font": TITLE_FONT}, "height": height,
            "margin": {"l": 10, "r": 10, "t": top, "b": 10},
            "xaxis": xaxis or axis(), "yaxis": yaxis or axis(), **layout,
        },
    )  # fmt: skip


def labelled_positions(n: int, room: int) -> list[int]:
    """Positions to label so that at most ``room`` labels share an axis: every k-th of ``n``."""
    step = max(1, math.ceil(n / max(room, 1)))
    return list(range(0, n, step))


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


def _axis_labels(tokens: Sequence[str], block: int, first: int = 0) -> tuple[list[str], list[str]]:
    """Unique category labels per cell (what hover shows) and tick texts (empty when block-averaged).

    Labels carry the position ("3: the"), so repeated tokens stay separate columns.
    """
    if block == 1:
        return [f"{first + i}: {safe_label(t)}" for i, t in enumerate(tokens)], [
            safe_label(t) for t in tokens
        ]
    cells = int(np.ceil(len(tokens) / block))
    last = first + len(tokens)
    return [f"tokens {first + c * block}–{min(last, first + (c + 1) * block) - 1}" for c in range(cells)], []


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
    x_room: int = LABEL_ROOM,
    first_query: int = 0,
    first_key: int = 0,
    diverging: bool = False,
) -> go.Figure:
    """Heatmap of a [queries, keys] matrix: queries down, keys across, tokens on the axes.

    ``diverging`` values (signed, such as a log-probability drop) get a red-white-blue scale centred
    on 0, so a cell near zero is white whatever the range; positive is red.

    Hover text comes from the axis labels and the cell's number (sent as a binary
    float32 array), so the payload grows with the cells' numbers, not with strings per cell.
    Every token keeps its hover label; tick labels thin out (every k-th) so they never overlap.
    ``first_query`` / ``first_key`` are the token positions of row / column 0 (for windows).
    """
    matrix, block = downsample(np.asarray(weights, dtype=np.float32), max_cells)
    shown = np.log10(np.clip(matrix, 1e-6, None)) if log_scale else matrix
    x_labels, x_text = _axis_labels(key_tokens, block, first_key)
    y_labels, y_text = _axis_labels(query_tokens, block, first_query)
    heatmap = go.Heatmap(
        z=shown,
        x=x_labels,
        y=y_labels,
        # Log scale colours log10 values; hover still shows the weight itself.
        customdata=matrix if log_scale else None,
        hovertemplate="query %{y}<br>key %{x}<br>" + value_name
        + (" %{customdata:.3g}" if log_scale else " %{z:.3g}") + "<extra></extra>",
        colorscale="RdBu_r" if diverging else colorscale,
        zmid=0.0 if diverging else None,
        colorbar={"title": {"text": wrapped(f"log10 {value_name}" if log_scale else value_name)}},
    )  # fmt: skip
    # Up to LABEL_ROOM rows, the figure grows so every query has its own readable label.
    height = int(np.clip(160 + LABEL_PX * len(y_labels), 380, 160 + LABEL_PX * LABEL_ROOM))
    shown_y = labelled_positions(len(y_text), (height - 160) // LABEL_PX)
    shown_x = labelled_positions(len(x_text), x_room)
    subtitle = f" (block-averaged {block}×{block})" if block > 1 else ""
    return styled(
        heatmap, height, title=title + subtitle,
        xaxis=axis("key", type="category", tickvals=[x_labels[i] for i in shown_x],
                   ticktext=[x_text[i] for i in shown_x], tickangle=-90 if len(shown_x) > STEEP_LABELS else -60,
                   side="bottom"),
        yaxis=axis("query", autorange="reversed", type="category", tickvals=[y_labels[i] for i in shown_y],
                   ticktext=[y_text[i] for i in shown_y]),
    )  # fmt: skip


def wrapped(title: str, width: int = COLORBAR_TITLE_CHARS) -> str:
    """A colour-bar title broken into lines of at most ``width`` characters, so its narrow column never cuts it."""
    return "<br>".join(textwrap.wrap(title, width, break_long_words=False)) or title


def token_bar(
    values: np.ndarray, tokens: Sequence[str], *, title: str = "", value_name: str = "weight", first: int = 0
) -> go.Figure:
    """Bar per token (e.g. how much the last token reads from each earlier token); ``first`` is bar 0's position."""
    positions = list(range(first, first + len(tokens)))
    labels = [f"{p}: {safe_label(t)}" for p, t in zip(positions, tokens, strict=True)]
    shown = labelled_positions(len(tokens), LABEL_ROOM)
    bar = go.Bar(
        x=positions,
        y=np.asarray(values, dtype=np.float32),
        customdata=labels,
        hovertemplate="%{customdata}<br>" + value_name + " %{y:.3g}<extra></extra>",
    )
    return styled(
        bar, 320, title=title, yaxis=axis(value_name),
        xaxis=axis(tickvals=[positions[i] for i in shown], ticktext=[safe_label(tokens[i]) for i in shown],
                   tickangle=-60),
    )  # fmt: skip


@functools.lru_cache(maxsize=8)
def colour_table(colorscale: str, levels: int = 255) -> np.ndarray:
    """[levels, 3] RGB bytes of a plotly colour scale, interpolated as plotly interpolates it."""
    colours = sample_colorscale(get_colorscale(colorscale), list(np.linspace(0.0, 1.0, levels)))
    return np.array([unlabel_rgb(colour) for colour in colours]).round().astype(np.uint8)


def png_uri(values: np.ndarray, colorscale: str) -> str:
    """A [rows, cols] matrix of values in [0, 1] as a PNG data URI in ``colorscale``; NaN cells transparent.

    An 8-bit palette image: 255 colour levels (what the screen shows of a heatmap too) and one
    transparent entry, about 90 KB where float32 cells took 1 MB.
    """
    table = colour_table(colorscale)
    missing = np.isnan(values)
    index = np.rint(np.clip(np.where(missing, 0.0, values), 0.0, 1.0) * (len(table) - 1)).astype(np.uint8)
    index[missing] = len(table)
    image = Image.fromarray(index, mode="P")
    image.putpalette(table.ravel().tolist() + [255, 255, 255])
    with io.BytesIO() as stream:
        image.save(stream, format="png", transparency=len(table))
        return "data:image/png;base64," + base64.b64encode(stream.getvalue()).decode("ascii")


def head_grid_figure(
    grid: HeadGrid, *, selected: tuple[int, int] | None = None, colorscale: str = "Viridis"
) -> go.Figure:
    """Every head's thumbnail in one image (layers across, heads down), with a clickable point per head.

    Clicking a head selects its point, whose customdata is (layer, head). The mosaic goes to the
    browser as a PNG, not as a heatmap of float cells: about 90 KB instead of 1 MB for 30 × 9 heads,
    drawn as one picture instead of 170,000 cells (the thumbnails carry no hover values).
    """
    names = [(layer, head) for layer in grid.layers for head in grid.heads]
    centres = [grid.cell(li, hi) for li in range(len(grid.layers)) for hi in range(len(grid.heads))]
    traces = [
        go.Image(source=png_uri(grid.mosaic, colorscale), hoverinfo="skip"),
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
    shapes = []
    if selected in names:
        x, y = grid.cell(grid.layers.index(selected[0]), grid.heads.index(selected[1]))
        half = grid.size / 2 + 0.5
        shapes.append(
            {"type": "rect", "x0": x - half, "x1": x + half, "y0": y - half, "y1": y + half,
             "line": {"color": "red", "width": 3}}
        )  # fmt: skip
    # Square thumbnails in a plot as wide as the page (about GRID_WIDTH px) but never taller than
    # GRID_MAX_HEIGHT, so the grid fits a 1280×720 screen; a tall grid (few layers, many heads)
    # narrows instead of padding empty rows under the layer labels.
    rows, cols = grid.mosaic.shape
    plot_height = min(GRID_MAX_HEIGHT, int(GRID_WIDTH * rows / max(cols, 1)))
    xaxis = axis(
        "layer", tickvals=[grid.cell(li, 0)[0] for li in range(len(grid.layers))],
        ticktext=[f"L{x}" for x in grid.layers], showgrid=False, zeroline=False, side="top",
        range=[-1, grid.mosaic.shape[1]], constrain="domain",
    )  # fmt: skip
    yaxis = axis(
        "head", tickvals=[grid.cell(0, hi)[1] for hi in range(len(grid.heads))],
        ticktext=[f"H{h}" for h in grid.heads], showgrid=False, zeroline=False, autorange="reversed",
        scaleanchor="x", constrain="domain",
    )  # fmt: skip
    return styled(
        traces, max(200, plot_height + 90), top=60, xaxis=xaxis, yaxis=yaxis, shapes=shapes,
        clickmode="event+select", dragmode=False,
    )  # fmt: skip


def layer_head_heatmap(
    values: np.ndarray,
    layers: Sequence[int],
    heads: Sequence[int],
    *,
    title: str = "",
    value_name: str = "value",
) -> go.Figure:
    """A [layers, heads] statistic as a heatmap: heads across, layers down."""
    heatmap = go.Heatmap(
        z=np.asarray(values, dtype=np.float32),
        x=[f"H{h}" for h in heads],
        y=[f"L{layer}" for layer in layers],
        colorscale="Viridis",
        colorbar={"title": {"text": value_name}},
        hovertemplate="%{y} %{x}<br>" + value_name + " %{z:.3f}<extra></extra>",
    )
    return styled(heatmap, max(300, 18 * len(layers) + 80), title=title, yaxis=axis(autorange="reversed"))


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
    return figure.update_layout(height=min(figure.layout.height, 460))
