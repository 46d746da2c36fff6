"""Sources figures: passage cards name their sources as the table does and show every source's score."""

from __future__ import annotations

import html
import re

import numpy as np

from attnviz.sources.figures import highlighted_sources
from attnviz.sources.passages import sources_of

PASSAGES = ["The bakery opened in 1998. On Sundays it sells cinnamon rolls.", "Rivers flood."]


def card_text(markup: str) -> list[str]:
    """Each card's visible text (tags dropped, character references decoded)."""
    cards = re.split(r"<div[^>]*>", markup)[1:]
    return [html.unescape(re.sub(r"<[^>]+>", " ", card)) for card in cards]


def test_sentence_cards_show_each_sentence_score_with_the_table_labels() -> None:
    sources = sources_of(PASSAGES, "sentence")
    labels = ["[1.1]", "[1.2]", "[2.1]"]
    assert len(sources) == 3
    scores = np.array([0.1, 0.7, -0.2])
    first, second = card_text(highlighted_sources(PASSAGES, sources, scores, "0, 0, 0", labels))
    assert "[1.1] +0.100 · [1.2] +0.700" in first
    assert "[1.1] The bakery" in " ".join(first.split())  # each sentence is marked with the table's label
    assert second.split()[:3] == ["[2.1]", "score", "-0.200"]  # a one-sentence passage says [2.1], not [2]


def test_passage_cards_keep_the_passage_label() -> None:
    sources = sources_of(PASSAGES, "passage")
    scores = np.array([0.25, 0.5])
    first, _ = card_text(highlighted_sources(PASSAGES, sources, scores, "0, 0, 0", ["[1]", "[2]"]))
    assert first.split()[:3] == ["[1]", "score", "+0.250"]
