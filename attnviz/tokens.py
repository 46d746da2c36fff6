"""Turn token ids into the text a reader expects to see.

Byte-level BPE (``Ġ``), SentencePiece (``▁``) and WordPiece (``##``) markers become
plain spaces or stay as the familiar ``##`` continuation; special tokens are flagged.
"""

from __future__ import annotations

from collections.abc import Sequence

import transformers

_REPLACEMENT = "\ufffd"
_MARKERS = {"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}


def display_tokens(
    tokenizer: transformers.PreTrainedTokenizerBase, ids: Sequence[int]
) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """Readable text of each token and whether it is a special token."""
    special_ids = set(tokenizer.all_special_ids)
    texts: list[str] = []
    for token_id in ids:
        text = tokenizer.decode([int(token_id)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if _REPLACEMENT in text or text == "":
            # A token holding part of a multi-byte character: show its raw piece instead.
            raw = tokenizer.convert_ids_to_tokens(int(token_id)) or ""
            text = "".join(_MARKERS.get(ch, ch) for ch in raw)
        texts.append(text)
    return tuple(texts), tuple(int(i) in special_ids for i in ids)
