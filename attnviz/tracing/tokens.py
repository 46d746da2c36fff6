"""Turn token ids into the text a reader expects to see.

Byte-level BPE (``Ġ``), SentencePiece (``▁``) and WordPiece (``##``) markers become
plain spaces or stay as the familiar ``##`` continuation; special tokens are flagged.

Byte-level tokenizers (GPT-2, Llama 3, SmolLM2) and SentencePiece byte fallback can split
one character over several tokens (an emoji, a Hebrew letter, a zero-width space). Such a
token shows the whole character with a piece marker, ``👋⟨1/3⟩`` ``👋⟨2/3⟩`` ``👋⟨3/3⟩``,
when its neighbours complete it; bytes that form no character in view (a lone token from a
top-k list, a sequence cut mid-character) show as byte notation, ``⟨f0 9f⟩``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache

import transformers

_REPLACEMENT = "\ufffd"
_MARKERS = {"Ġ": " ", "▁": " ", "Ċ": "\n", "ĉ": "\t"}
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def _byte_of_char() -> dict[str, int]:
    """GPT-2's byte ↔ printable-character table, inverted: the character a byte-level token uses for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            chars[chr(byte)] = byte
        else:
            chars[chr(256 + extra)] = byte
            extra += 1
    return chars


def _decoder_kinds(tokenizer: transformers.PreTrainedTokenizerBase) -> set[str]:
    """Names of the fast tokenizer's decoder steps (``ByteLevel``, ``ByteFallback``, …); empty for slow ones."""
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if decoder is None:
        return set()
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("type"), str):
                found.add(node["type"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(decoder.__getstate__()))
    return found


def _piece_bytes(piece: str, kinds: set[str]) -> bytes | None:
    """The bytes a raw vocabulary piece stands for, or None when the tokenizer has no byte pieces."""
    if "ByteLevel" in kinds:
        table = _byte_of_char()
        return b"".join(bytes([table[ch]]) if ch in table else ch.encode() for ch in piece)
    if "ByteFallback" in kinds:
        match = _BYTE_FALLBACK.fullmatch(piece)
        return bytes([int(match.group(1), 16)]) if match else piece.replace("▁", " ").encode()
    return None


def _utf8_length(lead: int) -> int:
    """How many bytes a UTF-8 character starting with ``lead`` has (1 for a stray byte)."""
    return 2 if 0xC0 <= lead < 0xE0 else 3 if 0xE0 <= lead < 0xF0 else 4 if 0xF0 <= lead < 0xF8 else 1


def _render(pieces: Sequence[bytes]) -> list[str]:
    """Each token's text from its bytes, reading characters across token boundaries.

    A character inside one token is shown as is; one spread over m tokens shows in each as
    ``char⟨k/m⟩``; bytes that form no character show as ``⟨hex⟩``.
    """
    data = b"".join(pieces)
    owner = [index for index, piece in enumerate(pieces) for _ in piece]
    texts = [""] * len(pieces)
    loose: list[list[int]] = [[] for _ in pieces]  # undecodable bytes waiting to be written, per token

    def flush(token: int) -> None:
        if loose[token]:
            texts[token] += "⟨" + " ".join(f"{b:02x}" for b in loose[token]) + "⟩"
            loose[token] = []

    start = 0
    while start < len(data):
        length = _utf8_length(data[start])
        try:
            char = data[start : start + length].decode("utf-8")
        except UnicodeDecodeError:
            loose[owner[start]].append(data[start])
            start += 1
            continue
        holders = sorted(set(owner[start : start + length]))
        for k, token in enumerate(holders, 1):
            flush(token)
            texts[token] += char if len(holders) == 1 else f"{char}⟨{k}/{len(holders)}⟩"
        start += length
    for token in range(len(pieces)):
        flush(token)
    return texts


def _plain_decode(tokenizer: transformers.PreTrainedTokenizerBase, token_id: int) -> str:
    """One token decoded on its own (whole characters), its raw piece if that fails."""
    text = tokenizer.decode([token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    if _REPLACEMENT in text or text == "":
        raw = tokenizer.convert_ids_to_tokens(token_id) or ""
        text = "".join(_MARKERS.get(ch, ch) for ch in raw)
    return text


def _token_texts(tokenizer: transformers.PreTrainedTokenizerBase, ids: Sequence[int], together: bool) -> list[str]:
    """Texts of ``ids``, read as one sequence (``together``) or each on its own."""
    ids = [int(i) for i in ids]
    kinds = _decoder_kinds(tokenizer)
    added = set(tokenizer.added_tokens_decoder)
    pieces = [
        None if token_id in added else _piece_bytes(tokenizer.convert_ids_to_tokens(token_id) or "", kinds)
        for token_id in ids
    ]
    texts = [_plain_decode(tokenizer, token_id) if piece is None else "" for token_id, piece in zip(ids, pieces)]
    runs: list[list[int]] = []  # consecutive byte-carrying tokens are read together
    for index, piece in enumerate(pieces):
        if piece is None:
            continue
        if together and runs and runs[-1][-1] == index - 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    for run in runs:
        for index, text in zip(run, _render([pieces[i] for i in run]), strict=True):
            texts[index] = text
    return texts


def display_tokens(
    tokenizer: transformers.PreTrainedTokenizerBase, ids: Sequence[int]
) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """Readable text of each token of one sequence, and whether it is a special token."""
    special_ids = set(tokenizer.all_special_ids)
    return tuple(_token_texts(tokenizer, ids, together=True)), tuple(int(i) in special_ids for i in ids)


def display_each(tokenizer: transformers.PreTrainedTokenizerBase, ids: Sequence[int]) -> tuple[str, ...]:
    """Readable text of unrelated tokens (e.g. a top-k list): each read alone, partial characters as bytes."""
    return tuple(_token_texts(tokenizer, ids, together=False))
