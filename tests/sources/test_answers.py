"""Sources answers batched: one left-padded greedy generation gives each prompt the tokens it gets alone, and
each answer's attention pass equals the solo pass; the queue batches sessions that ask together."""

from __future__ import annotations

import numpy as np
import pytest

from attnviz.models.loading import LoadedModel
from attnviz.sources.answers import Answered, AnswerQueue, AnswerRequest, answer_batch
from attnviz.sources.demo import DEMO_CASES
from attnviz.sources.passages import build_prompt

QUESTIONS = [
    ("Where is Paris?", ["Paris is the capital of France.", "The cat sleeps."]),
    ("What sleeps on the warm mat all afternoon?", ["The cat sleeps on the warm mat.", "Nine is ten.", "Hi"]),
    ("Sum?", ["Nine plus one is ten."]),
]


def requests_of(
    loaded: LoadedModel, cases: list[tuple[str, list[str]]], max_new_tokens: list[int], heads: list = ()
) -> list[AnswerRequest]:
    """One generated-answer request per (question, passages), prompts of different lengths."""
    return [
        AnswerRequest(build_prompt(loaded, question, passages), tuple(heads), n)
        for (question, passages), n in zip(cases, max_new_tokens, strict=True)
    ]


def assert_same_answer(got: Answered, alone: Answered) -> None:
    """The same tokens, and the solo pass's attention and log-probabilities within float tolerance."""
    np.testing.assert_array_equal(got.answer_ids, alone.answer_ids)
    for name in ("mass", "value_mass", "sink", "tokens"):
        ours, solo = getattr(got.attention, name), getattr(alone.attention, name)
        if solo is None:
            assert ours is None
        else:
            np.testing.assert_allclose(ours, solo, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(got.logprobs, alone.logprobs, atol=1e-4)


def test_batched_generation_gives_each_prompt_its_solo_answer(tiny) -> None:
    loaded = tiny("llama")
    requests = requests_of(loaded, QUESTIONS, [6, 3, 6], heads=[(1, 3), (0, 1)])
    assert len({len(r.prompt.ids) for r in requests}) == 3  # left padding is really exercised
    batched = answer_batch(loaded, requests)
    for request, got in zip(requests, batched, strict=True):
        assert 0 < len(got.answer_ids) <= request.max_new_tokens
        assert_same_answer(got, answer_batch(loaded, [request])[0])
        assert set(got.seconds) == {"generate", "attention"}


def test_pasted_and_generated_answers_share_a_batch(tiny) -> None:
    loaded = tiny("llama")
    generated, pasted = requests_of(loaded, QUESTIONS[:2], [4, 4])
    with loaded.lock:
        ids = np.asarray(loaded.tokenizer("In France.", add_special_tokens=False)["input_ids"])
    pasted = AnswerRequest(pasted.prompt, (), 4, ids)
    both = answer_batch(loaded, [pasted, generated])
    np.testing.assert_array_equal(both[0].answer_ids, ids)
    assert_same_answer(both[0], answer_batch(loaded, [pasted])[0])
    assert_same_answer(both[1], answer_batch(loaded, [generated])[0])


def test_the_queue_batches_questions_asked_together(tiny) -> None:
    """Requests that arrive while the model is busy share one generation; each gets its own answer."""
    loaded = tiny("llama")
    queue = AnswerQueue(loaded)
    requests = requests_of(loaded, QUESTIONS, [5, 5, 5])
    with loaded.lock:  # the model is busy while all three arrive
        futures = [queue.submit(r) for r in requests]
    for request, future in zip(requests, futures, strict=True):
        assert_same_answer(future.result(timeout=120), answer_batch(loaded, [request])[0])
    passes = queue.passes_by_size()
    assert sum(size * count for size, count in passes.items()) == len(requests) and max(passes) > 1, passes


@pytest.mark.slow
def test_smollm2_batched_answers_equal_solo_ones(smollm2) -> None:
    """The real model (GQA, chat template, an end-of-turn token that stops rows at different steps)."""
    cases = [(case.question, list(case.passages)) for case in DEMO_CASES]
    requests = requests_of(smollm2, cases, [12, 12, 12], heads=[(12, 1), (20, 4)])
    batched = answer_batch(smollm2, requests)
    alone = [answer_batch(smollm2, [r])[0] for r in requests]
    for got, solo in zip(batched, alone, strict=True):
        assert_same_answer(got, solo)
    assert "cinnamon" in smollm2.tokenizer.decode(batched[0].answer_ids).lower()  # the demo's answer
