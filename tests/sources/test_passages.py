"""Passage input handling and span mapping (passage text -> token ranges in the chat prompt)."""

from __future__ import annotations

import itertools

import pytest

from attnviz.sources.passages import (
    MAX_PASSAGES,
    MAX_PROMPT_CHARS,
    PassageError,
    Source,
    build_prompt,
    clean_passages,
    decode_upload,
    sentence_spans,
    sources_of,
    split_passages,
    token_limit,
    token_spans,
    without_sources,
)
from attnviz.tracing.tokens import display_tokens


def test_split_on_blank_lines_including_whitespace_only_lines() -> None:
    text = "First passage\nstill first.\n\n  \nSecond one.\n \t \nThird.\n\n\n"
    assert split_passages(text) == ["First passage\nstill first.", "Second one.", "Third."]


def test_split_of_blank_text_gives_nothing() -> None:
    assert split_passages("\n \n\t\n") == []


def test_upload_decodes_utf8_with_bom() -> None:
    assert decode_upload("notes.md", "\ufeffCafé\n\nZweite".encode()) == "Café\n\nZweite"


def test_upload_not_utf8_names_the_byte() -> None:
    with pytest.raises(PassageError, match=r"not UTF-8 text \(byte 3 is 0xe9\)"):
        decode_upload("latin.txt", "Caf\u00e9".encode("latin-1"))


def test_upload_size_limit_and_type() -> None:
    with pytest.raises(PassageError, match="files up to 10 bytes"):
        decode_upload("big.txt", b"x" * 11, limit=10)
    assert decode_upload("ok.TXT", b"x" * 10, limit=10) == "x" * 10
    with pytest.raises(PassageError, match="not a .txt or .md"):
        decode_upload("doc.pdf", b"%PDF")


def test_clean_passages_rejects_empty_and_too_many() -> None:
    assert clean_passages([" a ", "", "  ", "b"]) == ["a", "b"]
    with pytest.raises(PassageError, match="at least one"):
        clean_passages(["", " "])
    with pytest.raises(PassageError, match=f"at most {MAX_PASSAGES}"):
        clean_passages(["p"] * (MAX_PASSAGES + 1))


def test_token_spans_straddling_token_goes_to_larger_overlap() -> None:
    # chars: passage A = [0, 5), passage B = [5, 9); token 1 covers [3, 6): 2 chars of A, 1 of B.
    offsets = [(0, 3), (3, 6), (6, 9), (9, 10), (0, 0)]
    assert token_spans(offsets, [(0, 5), (5, 9)]) == [(0, 2), (2, 3)]


def test_token_spans_passage_swallowed_by_neighbour_is_an_error() -> None:
    with pytest.raises(PassageError, match="Passage 2"):
        token_spans([(0, 10)], [(0, 8), (8, 9)])


EDGE_PASSAGES = [
    "plain words at both ends",
    "'quoted start and end.'",
    "ends in a newline-like token:\n",
    "  leading spaces and émojis 🙂 at the end🙂",
    "1234567 digits split oddly 89",
    "x",
]


def _span_text(loaded, prompt, index: int) -> str:
    start, end = prompt.spans[index]
    return loaded.tokenizer.decode(prompt.ids[start:end].tolist())


def test_spans_cover_each_passage_exactly_in_smollm2_chat_prompt(smollm2) -> None:
    prompt = build_prompt(smollm2, "Which passage?", EDGE_PASSAGES)
    reference = smollm2.tokenizer.apply_chat_template(
        [{"role": "user", "content": _content(prompt)}], add_generation_prompt=True, tokenize=True
    )
    if hasattr(reference, "keys"):
        reference = reference["input_ids"]
    assert prompt.ids.tolist() == list(reference)  # same tokens as the model's own chat template
    ends = [end for _, end in prompt.spans]
    starts = [start for start, _ in prompt.spans]
    assert all(e <= s for e, s in zip(ends, starts[1:], strict=False))  # disjoint, in order
    for index, passage in enumerate(prompt.passages):
        shown = _span_text(smollm2, prompt, index)
        assert passage in shown, (passage, shown)
        # nothing from the numbering or the next passage leaks in beyond edge whitespace/punctuation
        assert len(shown.strip()) <= len(passage) + 2, (passage, shown)


def _content(prompt) -> str:
    from attnviz.sources.passages import user_message

    return user_message(prompt.question, prompt.passages)[0]


def test_spans_in_wordpiece_tokenizer_without_chat_template(tiny) -> None:
    loaded = tiny("bert")
    prompt = build_prompt(loaded, "What is here?", ["Alpha beta.", "Gamma-delta epsilon!"])
    tokens, _ = display_tokens(loaded.tokenizer, prompt.ids)
    assert [" ".join(tokens[s:e]) for s, e in prompt.spans] == ["alpha beta .", "gamma - delta epsilon !"]


def test_build_prompt_needs_a_question(smollm2) -> None:
    with pytest.raises(PassageError, match="question"):
        build_prompt(smollm2, "  ", ["a"])


ODD_TEXT = (
    "Dr. Ada Pell arrived at 5 p.m. on Jan. 3. She said <script>alert(1)</script> twice! "
    "Then 👩\u200d👩\u200d👧 cafe\u0301 \u200bzero-width\u200b. [click](javascript:alert(1)) ok.\n\n"
    "![x](http://example.com/a.png) Is it here?  مرحبا بالعالم. \x00NUL at the end."
)


def test_sentence_spans_slice_the_text_exactly_with_odd_unicode_and_markup() -> None:
    spans = sentence_spans(ODD_TEXT)
    sentences = [ODD_TEXT[start:end] for start, end in spans]
    assert sentences[0] == "Dr. Ada Pell arrived at 5 p.m. on Jan. 3."  # abbreviations do not split
    assert "She said <script>alert(1)</script> twice!" in sentences
    assert any("👩\u200d👩\u200d👧 cafe\u0301" in s for s in sentences)  # joiners and combining marks kept whole
    assert any(s.startswith("![x](http://example.com/a.png)") for s in sentences)
    assert all(s == s.strip() and s for s in sentences)
    assert all(e <= s for (_, e), (s, _) in itertools.pairwise(spans))  # in order, disjoint
    # everything but whitespace between sentences is covered
    covered = "".join(ODD_TEXT[start:end] for start, end in spans)
    assert "".join(covered.split()) == "".join(ODD_TEXT.split())


def test_sources_and_cutting_them_out() -> None:
    passages = ["One. Two two. Three!", "Alone"]
    sources = sources_of(passages, "sentence")
    assert [s.text(passages) for s in sources] == ["One.", "Two two.", "Three!", "Alone"]
    assert [s.passage for s in sources] == [0, 0, 0, 1]
    assert sources_of(passages, "passage")[0] == Source(0, 0, len(passages[0]))
    assert without_sources(passages, sources, [1]) == ["One.  Three!", "Alone"]
    assert without_sources(passages, sources, [3, 0, 2, 1]) == []
    with pytest.raises(PassageError, match="granularity"):
        sources_of(passages, "word")


def test_sentence_sources_map_to_their_tokens_in_the_chat_prompt(tiny) -> None:
    loaded = tiny("llama")  # SmolLM2's tokenizer and chat template
    passages = [ODD_TEXT, "Short one. And 'another' one?"]
    prompt = build_prompt(loaded, "Where?", passages, "sentence")
    assert prompt.granularity == "sentence" and len(prompt.spans) == len(prompt.sources) > 6
    text = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": _content(prompt)}], add_generation_prompt=True, tokenize=False
    )
    for index, source in enumerate(prompt.sources):
        start, end = prompt.spans[index]
        chars = text[prompt.offsets[start][0] : prompt.offsets[end - 1][1]]
        assert source.text(passages) in chars and len(chars.strip()) <= len(source.text(passages)) + 1
    assert prompt.source_label(0) == "[1.1]" and prompt.source_label(len(prompt.sources) - 1) == "[2.2]"
    tokens = prompt.passage_tokens(1)
    assert "".join(passages[1][s:e] for _, s, e in tokens) == passages[1]


def test_prompt_limit_is_checked_before_any_model_work(tiny) -> None:
    loaded = tiny("llama")
    with pytest.raises(PassageError, match=f"at most {MAX_PROMPT_CHARS:,} are accepted"):
        build_prompt(loaded, "q" * 100_000, ["a"])
    with pytest.raises(PassageError, match="characters"):
        build_prompt(loaded, "Who?", [" ".join(["word"] * 12_000)])
    with pytest.raises(PassageError, match=r"tokens; at most 20 fit .*leaving 0 for the answer"):
        build_prompt(loaded, "Who?", ["A passage of more than twenty tokens " * 3], max_tokens=20)
    # the model's context (256 positions here) bounds the prompt together with the answer's room
    assert token_limit(loaded, reserve=32) == 224
    with pytest.raises(PassageError, match="at most 56 fit"):
        build_prompt(loaded, "Who?", ["More words here and there. " * 20], reserve=200)
