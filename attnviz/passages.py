"""Passages of a context: reading them from user input and finding them among the prompt's tokens.

Users give passages as a list, as one text split on blank lines, or as uploaded
files. :func:`build_prompt` places them (numbered) with the question in the model's
chat template and maps every passage's characters to the token range it became,
using the fast tokenizer's offset mapping, so a token that straddles a passage's edge
(a leading space, a merged newline) is still counted once, for one passage.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePath

import numpy as np

from attnviz.loading import LoadedModel
from attnviz.trace import PromptError

MAX_UPLOAD_BYTES = 200_000
MAX_PASSAGES = 16
UPLOAD_SUFFIXES = (".txt", ".md")
INSTRUCTION = "Answer the question using only the passages below. Answer briefly."


class PassageError(PromptError):
    """Passages or an upload cannot be used (empty, too many, too large, not UTF-8 text)."""


@dataclass(frozen=True)
class PassagePrompt:
    """A question with its passages, tokenised.

    ``ids`` [n] are the prompt's token ids (chat template applied, generation prompt
    added); ``spans`` holds one [start, end) token range per passage, in order.
    """

    question: str
    passages: tuple[str, ...]
    ids: np.ndarray
    spans: tuple[tuple[int, int], ...]


def split_passages(text: str) -> list[str]:
    """Split pasted text into passages at blank lines (lines holding only whitespace count as blank)."""
    return [part.strip() for part in re.split(r"\n[ \t\r\f\v]*\n", text) if part.strip()]


def decode_upload(name: str, data: bytes, limit: int = MAX_UPLOAD_BYTES) -> str:
    """Text of an uploaded .txt/.md file; PassageError if too large, of another type, or not UTF-8."""
    if PurePath(name).suffix.lower() not in UPLOAD_SUFFIXES:
        raise PassageError(f"'{name}' is not a .txt or .md file.")
    if len(data) > limit:
        raise PassageError(f"'{name}' has {len(data):,} bytes; files up to {limit:,} bytes are accepted.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise PassageError(
            f"'{name}' is not UTF-8 text (byte {error.start} is 0x{data[error.start]:02x}). "
            "Save it as UTF-8 and upload it again."
        ) from None


def clean_passages(passages: Sequence[str]) -> list[str]:
    """Stripped, non-empty passages; PassageError if none remain or there are too many."""
    kept = [p.strip() for p in passages if p and p.strip()]
    if not kept:
        raise PassageError("Give at least one passage.")
    if len(kept) > MAX_PASSAGES:
        raise PassageError(f"{len(kept)} passages given; at most {MAX_PASSAGES} are supported.")
    return kept


def user_message(question: str, passages: Sequence[str]) -> tuple[str, list[tuple[int, int]]]:
    """The user turn holding the numbered passages and the question, and each passage's [start, end) chars."""
    text = INSTRUCTION + "\n\n"
    char_spans = []
    for number, passage in enumerate(passages, start=1):
        text += f"[{number}] "
        char_spans.append((len(text), len(text) + len(passage)))
        text += passage + "\n\n"
    return text + f"Question: {question.strip()}", char_spans


def token_spans(
    offsets: Sequence[tuple[int, int]], char_spans: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Token range [start, end) of each character span, from a tokenizer's (start, end) char offsets.

    A token belongs to the span it overlaps most (earlier span on ties), so tokens that
    straddle an edge are counted for exactly one passage and ranges never overlap.
    """
    owner = np.full(len(offsets), -1)
    for index, (tok_start, tok_end) in enumerate(offsets):
        overlaps = [max(0, min(tok_end, end) - max(tok_start, start)) for start, end in char_spans]
        if overlaps and max(overlaps) > 0:
            owner[index] = int(np.argmax(overlaps))
    ranges = []
    for span_index, (start, end) in enumerate(char_spans):
        tokens = np.flatnonzero(owner == span_index)
        if len(tokens) == 0:
            raise PassageError(f"Passage {span_index + 1} (characters {start}–{end}) maps to no token.")
        ranges.append((int(tokens[0]), int(tokens[-1]) + 1))
    return ranges


def build_prompt(loaded: LoadedModel, question: str, passages: Sequence[str]) -> PassagePrompt:
    """Tokenise question + passages in the model's chat template (plain text without one), with passage spans."""
    tokenizer = loaded.tokenizer
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        raise PassageError(f"'{loaded.info.name}' has no fast tokenizer, which passage mapping needs.")
    if not question or not question.strip():
        raise PassageError("Type a question.")
    kept = clean_passages(passages)
    content, char_spans = user_message(question, kept)
    with loaded.lock:
        if loaded.info.has_chat_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
            )
            shift = text.index(content)
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        else:
            text = content + "\nAnswer:"
            shift = 0
            encoded = tokenizer(text, return_offsets_mapping=True)
    spans = token_spans(
        encoded["offset_mapping"], [(start + shift, end + shift) for start, end in char_spans]
    )
    return PassagePrompt(
        question=question.strip(),
        passages=tuple(kept),
        ids=np.asarray(encoded["input_ids"], dtype=np.int64),
        spans=tuple(spans),
    )
