"""Token display: non-ASCII text reads as characters on byte-level BPE (SmolLM2) and WordPiece (MiniLM)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from attnviz.models.loading import LoadedModel
from attnviz.tracing.tokens import display_each, display_tokens
from attnviz.tracing.trace import trace
from attnviz.views.figures import attention_heatmap, safe_label, visible_text

pytestmark = pytest.mark.slow

TEXTS = {
    "emoji": "Hi 👋 there 👨‍👩‍👧",
    "zero-width": "a\u200bb\u200dc",
    "hebrew": "שלום עולם",
    "arabic": "مرحبا بالعالم",
    "combining": "e\u0301 cafe\u0301 naïve",
    "cjk": "日本語",
}
PIECE = re.compile(r"(.)⟨(\d+)/(\d+)⟩", re.DOTALL)


def ids_of(loaded: LoadedModel, text: str) -> list[int]:
    return loaded.tokenizer(text, add_special_tokens=False)["input_ids"]


def rejoin(tokens: tuple[str, ...]) -> str:
    """The text back from displayed tokens: a character split into pieces counts once (its first piece)."""
    return PIECE.sub(lambda m: m[1] if m[2] == "1" else "", "".join(tokens))


@pytest.mark.parametrize("name", list(TEXTS))
def test_byte_level_tokens_read_back_as_the_text(smollm2: LoadedModel, name: str) -> None:
    tokens, _ = display_tokens(smollm2.tokenizer, ids_of(smollm2, TEXTS[name]))
    assert rejoin(tokens) == TEXTS[name]
    assert not any(fragment in "".join(tokens) for fragment in ("âĢ", "×", "Ø", "ðŁ", "Ì", "\ufffd"))


def test_a_split_character_shows_whole_in_every_piece(smollm2: LoadedModel) -> None:
    ids = ids_of(smollm2, "Hi 👋 there")
    tokens, _ = display_tokens(smollm2.tokenizer, ids)
    assert tokens == ("Hi", " 👋⟨1/3⟩", "👋⟨2/3⟩", "👋⟨3/3⟩", " there")
    # Alone (a top-k list), a piece has no neighbours to complete it: its bytes are shown.
    assert display_each(smollm2.tokenizer, ids) == ("Hi", " ⟨f0 9f⟩", "⟨91⟩", "⟨8b⟩", " there")


def test_hebrew_and_arabic_letters_are_letters(smollm2: LoadedModel) -> None:
    hebrew, _ = display_tokens(smollm2.tokenizer, ids_of(smollm2, TEXTS["hebrew"]))
    assert hebrew[:3] == ("ש", "ל", "ו") and hebrew[3:5] == ("ם⟨1/2⟩", "ם⟨2/2⟩")
    arabic, _ = display_tokens(smollm2.tokenizer, ids_of(smollm2, TEXTS["arabic"]))
    assert "".join(arabic) == TEXTS["arabic"]  # every Arabic token here holds whole letters


def test_invisible_and_combining_characters_are_made_visible(smollm2: LoadedModel) -> None:
    zero_width = [visible_text(t) for t in display_tokens(smollm2.tokenizer, ids_of(smollm2, "a\u200bb"))[0]]
    assert zero_width == ["a", "⟨U+200B⟩⟨1/2⟩", "⟨U+200B⟩⟨2/2⟩", "b"]
    combining = [visible_text(t) for t in display_tokens(smollm2.tokenizer, ids_of(smollm2, "e\u0301"))[0]]
    assert combining == ["e", "◌\u0301⟨1/2⟩", "◌\u0301⟨2/2⟩"]
    assert visible_text("x\u202ey") == "x⟨U+202E⟩y"  # a bidi override cannot reorder a label
    assert visible_text("ם⟨1/2⟩") == "\u200eם\u200e⟨1/2⟩\u200e"  # Hebrew fenced: the marker stays on its right


def test_wordpiece_tokens_are_whole_characters(minilm: LoadedModel) -> None:
    hebrew, _ = display_tokens(minilm.tokenizer, ids_of(minilm, TEXTS["hebrew"]))
    assert hebrew == ("ש", "##ל", "##ו", "##ם", "ע", "##ו", "##ל", "##ם")
    arabic, _ = display_tokens(minilm.tokenizer, ids_of(minilm, TEXTS["arabic"]))
    assert arabic[0] == "م" and "".join(a.removeprefix("##") for a in arabic) == TEXTS["arabic"].replace(" ", "")
    assert display_tokens(minilm.tokenizer, ids_of(minilm, "Hi 👋"))[0] == ("hi", "[UNK]")
    assert display_tokens(minilm.tokenizer, ids_of(minilm, "e\u0301"))[0] == ("e",)  # BERT strips accents


def test_figures_and_traces_show_the_same_token_text(smollm2: LoadedModel) -> None:
    traced = trace(smollm2, "Hi 👋 שלום")
    assert traced.tokens == display_tokens(smollm2.tokenizer, ids_of(smollm2, "Hi 👋 שלום"))[0]
    spec = json.loads(attention_heatmap(np.eye(traced.n_tokens), traced.tokens, traced.tokens).to_json())
    assert spec["layout"]["xaxis"]["ticktext"] == [safe_label(t) for t in traced.tokens]
    assert " 👋⟨1/3⟩" in spec["layout"]["xaxis"]["ticktext"]
