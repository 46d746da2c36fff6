"""bertviz's head view and model view, fed from our traces, bounded and safe offline.

bertviz pastes ``json.dumps(params)`` into a ``<script>`` (a token containing
``</script>`` breaks out and runs as HTML), loads its libraries from CDNs, and ships
every weight of every head (measured: 31 MB of HTML for SmolLM2 at 64 tokens, 120 MB
at 128). Here the page is assembled from bertviz's own shipped ``head_view.js`` /
``model_view.js``: the weights travel as integers in a ``<script type="application/json">``
block with ``<``, ``>`` and ``&`` escaped, the libraries are inlined from
:mod:`attnviz.views.vendor`, the CDN configuration is removed, and only a chosen subset
(layers, heads, a token window, rounded weights) is sent, kept under :data:`MAX_BYTES`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import bertviz
import numpy as np

from attnviz.tracing.trace import Trace
from attnviz.views import vendor
from attnviz.views.figures import visible_text

ViewKind = Literal["head", "model"]
VIEWS: tuple[ViewKind, ...] = ("head", "model")

MAX_BYTES = 5_000_000
# SVG lines a view draws at once (head view: one layer; model view: all thumbnails); more stalls browsers.
MAX_LINES = 250_000
DEFAULT_DECIMALS = 3
DEFAULT_WINDOW = {"head": 64, "model": 32}
DEFAULT_MODEL_VIEW_LAYERS = 6

_BERTVIZ_DIR = Path(bertviz.__file__).resolve().parent
_REQUIRE_CONFIG = re.compile(r"require\.config\(\{.*?\}\);", re.DOTALL)
_PARAMS_MARKER = "const params = PYTHON_PARAMS;"
_FONT = "font-family:'Helvetica Neue', Helvetica, Arial, sans-serif;"

# Turns the integer weights back into fractions before bertviz's code reads them.
_DECODE_PARAMS = """<script>
function attnvizParams() {
  const params = JSON.parse(document.getElementById("attnviz-bertviz-data").textContent);
  const scale = params.scale;
  params.attention.forEach(d => {
    d.attn = d.attn.map(layer => layer.map(head => head.map(row => row.map(v => v / scale))));
  });
  return params;
}
</script>"""


# The model view draws a fixed 970 px wide SVG; give it a viewBox so it scales down to a narrower frame.
_FIT_WIDTH = """<script>
new MutationObserver(() => {
  document.querySelectorAll("#vis > svg").forEach(svg => {
    const width = svg.getAttribute("width"), height = svg.getAttribute("height");
    if (/^[0-9.]+$/.test(width) && /^[0-9.]+$/.test(height)) {
      svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
      svg.setAttribute("width", "100%");
      svg.removeAttribute("height");
      svg.style.maxWidth = `${width}px`;
    }
  });
}).observe(document.getElementById("vis"), {childList: true});
</script>"""


class ViewError(ValueError):
    """A view cannot be built from this trace and selection; the message says why."""


@dataclass(frozen=True)
class Selection:
    """What a view includes: model layer and head numbers, token windows [start, stop), rounding.

    ``window`` indexes ``Trace.tokens``; ``target_window`` indexes ``Trace.target_tokens``
    (encoder-decoders only; None means all target tokens).
    """

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    window: tuple[int, int]
    target_window: tuple[int, int] | None = None
    decimals: int = DEFAULT_DECIMALS


@dataclass(frozen=True)
class ViewSubset:
    """What a built view contains out of its trace, and the page's size in bytes."""

    view: ViewKind
    selection: Selection
    n_tokens: int
    n_target_tokens: int
    all_layers: tuple[int, ...]
    all_heads: tuple[int, ...]
    n_bytes: int
    n_lines: int

    @property
    def complete(self) -> bool:
        """True when every layer, head and token of the trace is included."""
        s = self.selection
        return (
            s.layers == self.all_layers
            and s.heads == self.all_heads
            and s.window == (0, self.n_tokens)
            and (s.target_window or (0, self.n_target_tokens)) == (0, self.n_target_tokens)
        )


@dataclass(frozen=True)
class BertvizView:
    """A self-contained HTML page (no network needed) and the pixel height it draws at."""

    html: str
    subset: ViewSubset
    height: int


@dataclass(frozen=True)
class _Panel:
    """One attention choice of the view's filter: weights [layers, heads, left, right] and their tokens."""

    name: str | None
    weights: np.ndarray
    left: tuple[str, ...]
    right: tuple[str, ...]


def _target_window(trace: Trace, selection: Selection) -> tuple[int, int]:
    return selection.target_window or (0, len(trace.target_tokens))


def _check(trace: Trace, selection: Selection) -> None:
    """Raise ViewError unless the selection names layers, heads and tokens the trace holds."""
    if not selection.layers or not selection.heads:
        raise ViewError("Choose at least one layer and one head.")
    missing_layers = sorted(set(selection.layers) - set(trace.layers))
    missing_heads = sorted(set(selection.heads) - set(trace.heads))
    if missing_layers or missing_heads:
        raise ViewError(f"The trace does not hold layers {missing_layers} / heads {missing_heads}.")
    windows = [(selection.window, trace.n_tokens)]
    if trace.kind == "encoder-decoder":
        windows.append((_target_window(trace, selection), len(trace.target_tokens)))
        if trace.decoder_attention is None or trace.decoder_attention.shape[0] != trace.attention.shape[0]:
            raise ViewError("bertviz views need the same layers on the encoder and decoder side.")
    for (start, stop), n in windows:
        if not 0 <= start < stop <= n:
            raise ViewError(f"Token window {start}–{stop} is not inside 0–{n}.")
    if not 0 <= selection.decimals <= 6:
        raise ViewError("Round weights to 0–6 decimals.")


def _panels(trace: Trace, selection: Selection) -> list[_Panel]:
    """The windowed, layer- and head-selected attention panels bertviz will draw."""
    layer_axis = [trace.layers.index(layer) for layer in selection.layers]
    head_axis = [trace.heads.index(head) for head in selection.heads]
    start, stop = selection.window
    tokens = tuple(visible_text(t) for t in trace.tokens[start:stop])

    def pick(weights: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
        # Window first (a view), then copy only the chosen layers and heads: traces can be GBs.
        return weights[:, :, rows, cols][layer_axis][:, head_axis]

    source = slice(start, stop)
    if trace.kind != "encoder-decoder":
        return [_Panel(None, pick(trace.attention, source, source), tokens, tokens)]
    t_start, t_stop = _target_window(trace, selection)
    target = slice(t_start, t_stop)
    target_tokens = tuple(visible_text(t) for t in trace.target_tokens[t_start:t_stop])
    assert trace.decoder_attention is not None and trace.cross_attention is not None
    return [
        _Panel("Encoder", pick(trace.attention, source, source), tokens, tokens),
        _Panel("Decoder", pick(trace.decoder_attention, target, target), target_tokens, target_tokens),
        _Panel("Cross", pick(trace.cross_attention, target, source), target_tokens, tokens),
    ]


def _lines(view: ViewKind, panels: list[_Panel]) -> int:
    """SVG lines drawn for the largest panel (head view shows one layer at a time)."""
    per_panel = [p.weights[:1].size if view == "head" else p.weights.size for p in panels]
    return max(per_panel)


def _json_for_script(value: object) -> str:
    """JSON safe inside a <script> element: <, > and & escaped (still valid JSON)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _params(view: ViewKind, trace: Trace, selection: Selection, panels: list[_Panel]) -> dict[str, object]:
    scale = 10**selection.decimals
    attention = [
        {
            "name": p.name,
            "attn": np.rint(p.weights.astype(np.float64) * scale).astype(np.int64).tolist(),
            "left_text": list(p.left),
            "right_text": list(p.right),
        }
        for p in panels
    ]
    params: dict[str, object] = {
        "attention": attention,
        "scale": scale,
        "default_filter": "0",
        "root_div_id": "attnviz-bertviz",
        "include_layers": list(selection.layers),
    }
    if view == "head":
        params.update(layer=selection.layers[0], heads=None)
    else:
        params.update(display_mode="light", include_heads=list(selection.heads), total_heads=len(trace.heads))
    return params


def _bertviz_script(view: ViewKind) -> str:
    """bertviz's shipped JS with the CDN configuration removed and params read from our data block."""
    source = (_BERTVIZ_DIR / f"{view}_view.js").read_text(encoding="utf-8")
    source, configs = _REQUIRE_CONFIG.subn("", source, count=1)
    if configs != 1 or _PARAMS_MARKER not in source:
        raise ViewError(f"bertviz's {view}_view.js has an unexpected layout; cannot assemble the view.")
    return source.replace(_PARAMS_MARKER, "const params = attnvizParams();", 1)


def _controls(panels: list[_Panel]) -> str:
    """The attention filter of an encoder-decoder; the layer is chosen by the page, not a second dropdown."""
    options = "".join(f"<option value='{i}'>{p.name}</option>" for i, p in enumerate(panels))
    attention = f"Attention: <select id='filter'>{options}</select>" if len(panels) > 1 else ""
    return f"<span style='user-select:none'>{attention}</span>"


def _height(view: ViewKind, trace: Trace, panels: list[_Panel]) -> int:
    """Pixels the view needs, from bertviz's own layout constants."""
    rows = max(max(len(p.left), len(p.right)) for p in panels)
    controls = 40
    if view == "head":
        return math.ceil(rows * 22.5 + 30) + controls
    n_layers = panels[0].weights.shape[0]
    thumbnail = rows * 7 * (12 / len(trace.heads)) + 10
    detail = rows * 18 + 2 * 15 + 25
    return math.ceil(max(n_layers * thumbnail + 38, detail)) + controls


def _page(view: ViewKind, trace: Trace, selection: Selection, panels: list[_Panel]) -> str:
    data = _json_for_script(_params(view, trace, selection, panels))
    return "\n".join(
        [
            "<!DOCTYPE html><html><head><meta charset='utf-8'></head>",
            f"<body style='margin:0;{_FONT}'>",
            f"<div id='attnviz-bertviz' style=\"{_FONT}\">{_controls(panels)}",
            "<div id='vis'></div></div>",
            f"<script type='application/json' id='attnviz-bertviz-data'>{data}</script>",
            _DECODE_PARAMS,
            _FIT_WIDTH if view == "model" else "",
            vendor.inline_scripts(),
            f"<script>\n{_bertviz_script(view)}\n</script>",
            "</body></html>",
        ]
    )


def build_view(trace: Trace, view: ViewKind, selection: Selection) -> BertvizView:
    """Build a head or model view of exactly ``selection`` (no size bound; see :func:`fit`)."""
    _check(trace, selection)
    panels = _panels(trace, selection)
    html = _page(view, trace, selection, panels)
    subset = ViewSubset(
        view=view,
        selection=selection,
        n_tokens=trace.n_tokens,
        n_target_tokens=len(trace.target_tokens),
        all_layers=trace.layers,
        all_heads=trace.heads,
        n_bytes=len(html.encode("utf-8")),
        n_lines=_lines(view, panels),
    )
    return BertvizView(html=html, subset=subset, height=_height(view, trace, panels))


def default_selection(trace: Trace, view: ViewKind) -> Selection:
    """A responsive start: the last tokens, all heads, all layers (model view: a spread of layers)."""
    layers = trace.layers
    if view == "model" and len(layers) > DEFAULT_MODEL_VIEW_LAYERS:
        picks = np.linspace(0, len(layers) - 1, DEFAULT_MODEL_VIEW_LAYERS).round().astype(int)
        layers = tuple(layers[i] for i in sorted(set(picks.tolist())))
    length = DEFAULT_WINDOW[view]
    target = len(trace.target_tokens)
    return Selection(
        layers=tuple(layers),
        heads=trace.heads,
        window=(max(0, trace.n_tokens - length), trace.n_tokens),
        target_window=(max(0, target - length), target) if target else None,
    )


def _shrink(window: tuple[int, int], factor: float) -> tuple[int, int]:
    """Keep the window's end and ``factor`` of its length (at least one token)."""
    start, stop = window
    length = max(1, min(stop - start - 1, math.floor((stop - start) * factor)))
    return (stop - length, stop)


def fit(
    trace: Trace, view: ViewKind, selection: Selection, max_bytes: int = MAX_BYTES, max_lines: int = MAX_LINES
) -> BertvizView:
    """Build the view, shortening the token windows (keeping their ends) until it fits both bounds."""
    built = build_view(trace, view, selection)
    while built.subset.n_bytes > max_bytes or built.subset.n_lines > max_lines:
        current = built.subset.selection
        lengths = [current.window[1] - current.window[0]]
        if current.target_window is not None:
            lengths.append(current.target_window[1] - current.target_window[0])
        if max(lengths) == 1:
            raise ViewError(
                f"Even one token of {len(current.layers)} layers × {len(current.heads)} heads exceeds "
                "the bounds: choose fewer layers or heads."
            )
        # Bytes and lines grow with the square of the window: shrink by the square root of the excess.
        excess = max(built.subset.n_bytes / max_bytes, built.subset.n_lines / max_lines)
        factor = min(0.9, 0.95 / math.sqrt(excess))
        smaller = replace(
            current,
            window=_shrink(current.window, factor),
            target_window=None if current.target_window is None else _shrink(current.target_window, factor),
        )
        built = build_view(trace, view, smaller)
    return built
