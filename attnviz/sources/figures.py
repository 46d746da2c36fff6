"""Figures of the Sources page: passages highlighted by source (passage, sentence or token) and a bar per source.

Passage text is user text that goes into ``st.markdown(..., unsafe_allow_html=True)``:
:func:`html_text` escapes HTML and every character Markdown treats as syntax, and turns
every kind of line break into ``<br>``, so a passage stays one line of HTML (a blank line
would end the HTML block and let the rest be read as Markdown: links, images).
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from attnviz.sources.passages import Source
from attnviz.views.figures import safe_label

Segment = tuple[int, int, float, str]  # [start, end) characters, score, label shown before it ("" for none)
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_MARKDOWN = re.compile(r"[\\`*_{}\[\]()#+\-.!|~$:=\"']")


def html_text(text: str) -> str:
    """``text`` as literal HTML on one line: escaped, Markdown syntax as character references, breaks as <br>."""
    escaped = html.escape(text.replace("\x00", "\ufffd"), quote=False)
    escaped = _MARKDOWN.sub(lambda m: f"&#{ord(m.group())};", escaped)
    return _LINE_BREAKS.sub("<br>", escaped)


def _block(header: str, text: str, segments: Sequence[Segment], colour: str, top: float) -> str:
    """One passage as a bordered <div>, each segment's background strength following its score."""
    parts, cursor = [], 0
    for start, end, score, label in sorted(segments, key=lambda s: s[0]):
        alpha = max(0.0, score / top) * 0.6
        parts.append(html_text(text[cursor:start]))
        sup = f"<sup>{html_text(label)}</sup>" if label else ""
        parts.append(
            f'<span title="{score:+.4f}" style="background: rgba({colour}, {alpha:.3f}); border-radius: 3px;">'
            f"{sup}{html_text(text[start:end])}</span>"
        )
        cursor = max(cursor, end)
    parts.append(html_text(text[cursor:]))
    return (
        f'<div style="border-left: 4px solid rgba({colour}, 0.9); padding: 6px 10px; margin: 4px 0; '
        f'border-radius: 4px;">{header}<br>{"".join(parts)}</div>'
    )


def highlighted_sources(
    passages: Sequence[str], sources: Sequence[Source], scores: np.ndarray, colour: str, labels: Sequence[str]
) -> str:
    """HTML of all passages, each source (whole passage or sentence) shaded by its score; all text escaped.

    Each card's header names its sources with the table's labels ([2], or [2.1] for a sentence) and
    their scores, so a passage of several sentences shows every sentence's score.
    """
    top = float(np.max(np.abs(scores))) or 1.0
    blocks = []
    for number, passage in enumerate(passages):
        mine = [i for i, s in enumerate(sources) if s.passage == number]
        whole = len(mine) == 1 and (sources[mine[0]].start, sources[mine[0]].end) == (0, len(passage))
        segments = [
            (sources[i].start, sources[i].end, float(scores[i]), "" if whole else labels[i]) for i in mine
        ]
        named = html_text(labels[mine[0]]) if whole else f"[{number + 1}]"
        each = (
            [f"score {float(scores[mine[0]]):+.3f}"]
            if whole
            else [f"{labels[i]} {float(scores[i]):+.3f}" for i in mine]
        )
        header = f"<b>{named}</b> <small>{html_text(' · '.join(each))}</small>"
        blocks.append(_block(header, passage, segments, colour, top))
    return "".join(blocks)


def highlighted_tokens(
    passage: str, tokens: Sequence[tuple[int, int, float]], colour: str, header: str
) -> str:
    """HTML of one passage with every token shaded by its score (token-level attention); all text escaped."""
    top = max((abs(score) for _, _, score in tokens), default=0.0) or 1.0
    return _block(html_text(header), passage, [(s, e, score, "") for s, e, score in tokens], colour, top)


def source_bar(scores: np.ndarray, labels: Sequence[str], value_name: str) -> go.Figure:
    """One bar per source, labelled [2] or [2.3]."""
    shown = [safe_label(label) for label in labels]
    figure = go.Figure(
        go.Bar(
            x=list(range(len(scores))),
            y=scores,
            customdata=shown,
            hovertemplate="%{customdata}<br>%{y:.4f}<extra></extra>",
        )
    )
    figure.update_xaxes(tickmode="array", tickvals=list(range(len(scores))), ticktext=shown, title="source")
    figure.update_layout(yaxis_title=value_name, height=260, margin={"l": 10, "r": 10, "t": 20, "b": 10})
    return figure
