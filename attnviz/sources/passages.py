"""Passages of a context: reading them from user input and finding them among the prompt's tokens.

Users give passages as a list, as one text split on blank lines, or as uploaded
files. Sources are the units an answer is attributed to: whole passages, or sentences
(split by pysbd with exact character offsets). :func:`build_prompt` places the passages
(numbered) with the question in the model's chat template, refuses prompts over the
length limit before any model work, and maps every source's characters to the token
range it became, using the fast tokenizer's offset mapping, so a token that straddles
an edge (a leading space, a merged newline) is still counted once, for one source.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np
import pysbd

from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import PromptError

MAX_UPLOAD_BYTES = 200_000
MAX_UPLOAD_FILES = 8
MAX_PASSAGES = 16
MAX_PROMPT_CHARS = 16_000
MAX_PROMPT_TOKENS = 2_048
GRANULARITIES = ("passage", "sentence")
Progress = Callable[[float, str], None]  # (fraction done, what is happening), for slow steps
UPLOAD_SUFFIXES = (".txt", ".md")
INSTRUCTION = "Answer the question using only the passages below. Answer briefly."


_SEGMENTER = pysbd.Segmenter(language="en", clean=False, char_span=True)


class PassageError(PromptError):
    """Passages or an upload cannot be used (empty, too many, too large, not UTF-8 text)."""


@dataclass(frozen=True)
class Source:
    """A unit an answer is attributed to: characters [start, end) of passage ``passage``."""

    passage: int
    start: int
    end: int

    def text(self, passages: Sequence[str]) -> str:
        return passages[self.passage][self.start : self.end]


@dataclass(frozen=True)
class PassagePrompt:
    """A question with its passages, tokenised.

    ``ids`` [n] are the prompt's token ids (chat template applied, generation prompt
    added); ``sources`` are the attribution units (whole passages or sentences) and
    ``spans`` holds one [start, end) token range per source, in order. ``offsets`` [n, 2]
    are each token's characters in the prompt text and ``passage_chars`` where each
    passage starts and ends there.
    """

    question: str
    passages: tuple[str, ...]
    ids: np.ndarray
    spans: tuple[tuple[int, int], ...]
    sources: tuple[Source, ...] = ()
    granularity: str = "passage"
    offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))
    passage_chars: tuple[tuple[int, int], ...] = ()

    def source_label(self, index: int) -> str:
        """``[2]`` for passage 2, ``[2.3]`` for its third sentence."""
        source = self.sources[index]
        if self.granularity == "passage":
            return f"[{source.passage + 1}]"
        number = sum(1 for s in self.sources[:index] if s.passage == source.passage) + 1
        return f"[{source.passage + 1}.{number}]"

    def passage_tokens(self, passage: int) -> list[tuple[int, int, int]]:
        """(token index, start, end) of the tokens inside passage ``passage``, in that passage's characters."""
        first, last = self.passage_chars[passage]
        return [
            (index, max(start, first) - first, min(end, last) - first)
            for index, (start, end) in enumerate(self.offsets.tolist())
            if min(end, last) > max(start, first)
        ]


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


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) characters of each sentence of ``text`` (pysbd), trimmed of surrounding whitespace.

    Every span slices ``text`` exactly: pysbd's offsets are checked and, where they do
    not match, the sentence is found in the text after the previous one.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for piece in _SEGMENTER.segment(text):
        sentence = piece.sent.strip()
        if not sentence:
            continue
        start = piece.start + (len(piece.sent) - len(piece.sent.lstrip()))
        if text[start : start + len(sentence)] != sentence or start < cursor:
            start = text.find(sentence, cursor)
            if start < 0:
                continue
        spans.append((start, start + len(sentence)))
        cursor = start + len(sentence)
    return spans or ([(0, len(text))] if text.strip() else [])


def sources_of(passages: Sequence[str], granularity: str = "passage") -> tuple[Source, ...]:
    """The attribution units of ``passages``: each passage whole, or each of its sentences."""
    if granularity not in GRANULARITIES:
        raise PassageError(f"Unknown granularity {granularity!r}; choose from {', '.join(GRANULARITIES)}.")
    if granularity == "passage":
        return tuple(Source(index, 0, len(passage)) for index, passage in enumerate(passages))
    return tuple(
        Source(index, start, end)
        for index, passage in enumerate(passages)
        for start, end in sentence_spans(passage)
    )


def without_sources(passages: Sequence[str], sources: Sequence[Source], removed: Sequence[int]) -> list[str]:
    """The passages with the ``removed`` sources cut out (passages left empty are dropped)."""
    cut: dict[int, list[Source]] = {}
    for index in removed:
        cut.setdefault(sources[index].passage, []).append(sources[index])
    kept = []
    for index, passage in enumerate(passages):
        for source in sorted(cut.get(index, []), key=lambda s: -s.start):
            passage = passage[: source.start] + passage[source.end :]
        if passage.strip():
            kept.append(passage.strip())
    return kept


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
    offsets: Sequence[tuple[int, int]],
    char_spans: Sequence[tuple[int, int]],
    names: Sequence[str] | None = None,
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
            name = names[span_index] if names else f"Passage {span_index + 1}"
            raise PassageError(f"{name} (characters {start}–{end}) maps to no token.")
        ranges.append((int(tokens[0]), int(tokens[-1]) + 1))
    return ranges


def token_limit(loaded: LoadedModel, reserve: int = 0, max_tokens: int = MAX_PROMPT_TOKENS) -> int:
    """Most prompt tokens allowed: ``max_tokens``, and room for ``reserve`` answer tokens in the model's context."""
    context = getattr(loaded.model.config, "max_position_embeddings", None) or max_tokens + reserve
    return max(0, min(max_tokens, context - reserve))


def build_prompt(
    loaded: LoadedModel,
    question: str,
    passages: Sequence[str],
    granularity: str = "passage",
    *,
    reserve: int = 0,
    max_tokens: int = MAX_PROMPT_TOKENS,
) -> PassagePrompt:
    """Tokenise question + passages in the model's chat template (plain text without one), with source spans.

    The prompt is refused (PassageError) when over the token limit, leaving ``reserve``
    tokens of the model's context for the answer; an over-long text is refused by its
    character count before it is even tokenised.
    """
    tokenizer = loaded.tokenizer
    if tokenizer is None or not getattr(tokenizer, "is_fast", False):
        raise PassageError(f"'{loaded.info.name}' has no fast tokenizer, which passage mapping needs.")
    if not question or not question.strip():
        raise PassageError("Type a question.")
    kept = clean_passages(passages)
    limit = token_limit(loaded, reserve, max_tokens)
    n_chars = len(question) + sum(len(p) for p in kept)
    if n_chars > max(MAX_PROMPT_CHARS, 8 * limit):
        raise PassageError(
            f"The question and passages have {n_chars:,} characters; at most {MAX_PROMPT_CHARS:,} are accepted "
            f"(the prompt may hold {limit:,} tokens). Shorten the passages or keep only the relevant ones."
        )
    sources = sources_of(kept, granularity)
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
    if len(encoded["input_ids"]) > limit:
        raise PassageError(
            f"The prompt has {len(encoded['input_ids']):,} tokens; at most {limit:,} fit with '{loaded.info.name}' "
            f"(leaving {reserve} for the answer). Shorten the passages or keep only the relevant ones."
        )
    passage_chars = [(start + shift, end + shift) for start, end in char_spans]
    source_chars = [
        (passage_chars[s.passage][0] + s.start, passage_chars[s.passage][0] + s.end) for s in sources
    ]
    names = [
        f"Passage {s.passage + 1}" + (f" sentence at {s.start}" if granularity == "sentence" else "")
        for s in sources
    ]
    spans = token_spans(encoded["offset_mapping"], source_chars, names)
    return PassagePrompt(
        question=question.strip(),
        passages=tuple(kept),
        ids=np.asarray(encoded["input_ids"], dtype=np.int64),
        spans=tuple(spans),
        sources=sources,
        granularity=granularity,
        offsets=np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2),
        passage_chars=tuple(passage_chars),
    )
