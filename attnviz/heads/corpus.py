"""The head atlas's corpus: natural passages (shipped in the repo, or the user's) plus sequences made in code.

Natural text measures how heads behave on language; two kinds of generated sequences give
the token-matching statistics a clean test: random tokens repeated twice (an induction head
at the second copy attends to the token after the earlier occurrence) and random tokens where
some positions repeat an earlier token out of order (a duplicate-token head attends to it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from attnviz.heads.stats import repeated_random_tokens
from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import PromptError, encode

SHIPPED = Path(__file__).with_name("corpus") / "natural.jsonl"
SHIPPED_NAME = "attnviz natural passages"
MAX_CORPUS_BYTES = 20_000_000
PROMPT_TOKENS = 128  # natural passages are cut to this many tokens; generated sequences are about as long
MIN_PROMPT_TOKENS = 8
DUPLICATE_SHARE = 0.3  # in a duplicated-token sequence, about this share of positions repeat an earlier token

PromptKind = Literal["natural", "repeated", "duplicate"]


class CorpusError(PromptError):
    """A corpus file that cannot be read: not UTF-8, bad JSON lines, or no passage at all."""


@dataclass(frozen=True)
class Corpus:
    """Natural-text passages under a name (the shipped corpus or a user's file)."""

    name: str
    texts: tuple[str, ...]

    @property
    def digest(self) -> str:
        """Hash of the passages (what cached atlases of this corpus are keyed on)."""
        return hashlib.sha256(json.dumps(self.texts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CorpusPrompt:
    """One prompt of the atlas as token ids.

    ``kind`` says where it came from; ``label`` is its opening words (natural) or how it was made;
    for ``repeated`` prompts the block of ``period`` tokens starts at ``start`` and then repeats.
    """

    kind: PromptKind
    ids: tuple[int, ...]
    label: str
    period: int = 0
    start: int = 0


def parse_corpus(name: str, data: str) -> Corpus:
    """Passages from a ``.jsonl`` file (one {"text": ...} per line) or plain text (blank-line separated)."""
    if name.lower().endswith(".jsonl"):
        texts = []
        for number, line in enumerate(data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorpusError(f"{name} line {number} is not JSON: {error}") from None
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise CorpusError(f'{name} line {number}: each line needs {{"text": "..."}}')
            texts.append(row["text"])
    else:
        texts = data.replace("\r\n", "\n").split("\n\n")
    passages = tuple(" ".join(text.split()) for text in texts if text.strip())
    if not passages:
        raise CorpusError(f"{name} holds no passage of text.")
    return Corpus(name, passages)


def decode_corpus(name: str, data: bytes) -> Corpus:
    """A corpus from an uploaded or read file's bytes (UTF-8, at most MAX_CORPUS_BYTES)."""
    if len(data) > MAX_CORPUS_BYTES:
        raise CorpusError(f"{name} is larger than {MAX_CORPUS_BYTES // 1_000_000} MB.")
    try:
        return parse_corpus(name, data.decode("utf-8"))
    except UnicodeDecodeError:
        raise CorpusError(f"{name} is not UTF-8 text.") from None


def read_corpus(path: Path) -> Corpus:
    """A user's corpus file (.txt or .jsonl)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"Could not read {path}: {error}") from None
    return decode_corpus(path.name, data)


def shipped_corpus() -> Corpus:
    """The natural passages that ship with attnviz (written for it, or public-domain; see corpus/SOURCE.md)."""
    return Corpus(SHIPPED_NAME, parse_corpus(SHIPPED.name, SHIPPED.read_text(encoding="utf-8")).texts)


def generated_counts(n_natural: int) -> int:
    """How many sequences of each generated kind go with ``n_natural`` passages (4 to 24)."""
    return int(np.clip(n_natural // 6, 4, 24))


def _duplicated_tokens(loaded: LoadedModel, length: int, seed: int) -> tuple[int, ...]:
    """Random ordinary tokens in which about DUPLICATE_SHARE of positions repeat a random earlier one."""
    ids, start = repeated_random_tokens(loaded, length, seed=10_000 + seed)
    fresh = ids[start : start + length]
    rng = np.random.default_rng(seed)
    out = list(ids[:start])
    for position, token in enumerate(fresh):
        body = out[start:]
        repeat = position >= 2 and rng.random() < DUPLICATE_SHARE and body[-1] not in body[:-1]
        # Never repeat right after a repeat: the next token would then also follow an earlier occurrence.
        out.append(int(rng.choice(body[:-1])) if repeat else token)
    return tuple(out)


def corpus_prompts(
    loaded: LoadedModel, corpus: Corpus, n_natural: int, *, max_tokens: int = PROMPT_TOKENS, seed: int = 0
) -> tuple[CorpusPrompt, ...]:
    """Up to ``n_natural`` natural passages (cut to ``max_tokens``) and the generated sequences that go with them."""
    natural = []
    for text in corpus.texts:
        if len(natural) == n_natural:
            break
        ids = encode(loaded, text)[:max_tokens]
        if len(ids) >= MIN_PROMPT_TOKENS:
            natural.append(CorpusPrompt("natural", tuple(ids), " ".join(text.split()[:8])))
    if not natural:
        raise CorpusError(f"{corpus.name}: no passage has {MIN_PROMPT_TOKENS} tokens or more.")
    n_generated = generated_counts(n_natural)
    period = max_tokens // 2 - 1
    repeated = []
    for index in range(n_generated):
        ids, start = repeated_random_tokens(loaded, period, seed=seed + index)
        repeated.append(
            CorpusPrompt("repeated", tuple(ids), f"{period} random tokens repeated twice (seed {seed + index})",
                         period, start)
        )  # fmt: skip
    duplicate = [
        CorpusPrompt("duplicate", _duplicated_tokens(loaded, max_tokens - 2, seed + index),
                     f"random tokens with duplicates (seed {seed + index})")
        for index in range(n_generated)
    ]  # fmt: skip
    return (*natural, *repeated, *duplicate)


def token_matches(ids: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate, induction) boolean [n, n] matrices of the keys each query's token matches.

    duplicate[i, j]: an earlier key j holds the same token as query i. induction[i, j]: the
    key before j (j − 1, earlier than i) holds query i's token, so j is what followed it.
    """
    tokens = np.asarray(ids)
    same = tokens[:, None] == tokens[None, :]
    earlier = np.tri(len(tokens), k=-1, dtype=bool)
    induction = np.zeros_like(same)
    induction[:, 1:] = same[:, :-1]
    return same & earlier, induction & earlier
