"""Sources answers for many sessions at once: one batched greedy ``generate``, then each attention pass.

A class pressing Answer together would otherwise generate one answer after another: each greedy
decoding step reads every weight of the model for one row. :class:`AnswerQueue` (a
:class:`attnviz.tracing.batching.BatchQueue`) takes the answers waiting together and generates them
in one left-padded batch (``generate`` derives each row's positions from its attention mask, so a
row's tokens are those it gets alone), then runs each answer's attention pass
(:func:`attnviz.sources.attention.passage_attention`) on its own unpadded prompt.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from attnviz.models.loading import LoadedModel
from attnviz.sources.attention import Head, PassageAttention, passage_attention
from attnviz.sources.passages import PassagePrompt
from attnviz.tracing.batching import BatchQueue
from attnviz.tracing.inputs import pad

# Prompts up to this many tokens share a batch: a row is as wide as the batch's longest prompt.
SHORT_TOKENS = 1_024


def _stops(loaded: LoadedModel, eos: int | list[int] | None) -> set[int]:
    """Token ids that end an answer: end of sequence and every special token."""
    stops = set(np.atleast_1d(eos).tolist()) if eos is not None else set()
    with loaded.lock:
        return stops | set(loaded.tokenizer.all_special_ids)


def generate_answers(
    loaded: LoadedModel, prompts: Sequence[np.ndarray], max_new_tokens: int
) -> list[np.ndarray]:
    """Greedy answer ids of each prompt (without the end-of-turn token), at most ``max_new_tokens`` long,
    generated in one batch padded on the left (one prompt: no padding)."""
    generation = loaded.model.generation_config
    eos = generation.eos_token_id
    pad_token = generation.pad_token_id if generation.pad_token_id is not None else eos
    pad_id = int(np.atleast_1d(pad_token)[0]) if pad_token is not None else 0
    ids, mask = pad([[int(t) for t in p] for p in prompts], pad_id, left=True)
    with loaded.lock, torch.inference_mode():
        output = loaded.model.generate(
            ids.to(loaded.device),
            attention_mask=mask.to(loaded.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
        )
    stops = _stops(loaded, eos)
    answers = []
    for row in output[:, ids.shape[1] :].cpu().numpy():
        end = next((i for i, token in enumerate(row) if int(token) in stops), len(row))
        answers.append(row[:end].astype(np.int64))
    return answers


@dataclass(frozen=True)
class AnswerRequest:
    """One answer to compute: its prompt, the heads whose per-token shares to keep, and either a pasted
    answer's ids (teacher-forced) or the most tokens to generate."""

    prompt: PassagePrompt
    heads: tuple[Head, ...] = ()
    max_new_tokens: int = 32
    pasted: np.ndarray | None = None


@dataclass(frozen=True)
class Answered:
    """An answer's ids with its attention into the sources and its log-probabilities (None: empty answer).

    ``seconds``: ``generate`` (the whole batch's generation, shared by its answers) and ``attention``
    (this answer's own pass).
    """

    answer_ids: np.ndarray
    attention: PassageAttention | None
    logprobs: np.ndarray | None
    seconds: dict[str, float] = field(default_factory=dict)


def answer_batch(loaded: LoadedModel, requests: Sequence[AnswerRequest]) -> list[Answered]:
    """Generate the answers that are not pasted in one batch, then run each answer's attention pass."""
    wanted = [r for r in requests if r.pasted is None]
    started = time.perf_counter()
    generated = (
        iter(generate_answers(loaded, [r.prompt.ids for r in wanted], max(r.max_new_tokens for r in wanted)))
        if wanted
        else iter(())
    )
    generate_s = time.perf_counter() - started
    answered = []
    for request in requests:
        # Greedy: a row's first tokens are the same whatever the batch's longest answer, so cropping is exact.
        answer_ids = next(generated)[: request.max_new_tokens] if request.pasted is None else request.pasted
        if len(answer_ids) == 0:
            answered.append(Answered(answer_ids, None, None, {"generate": generate_s}))
            continue
        started = time.perf_counter()
        attention, logprobs = passage_attention(loaded, request.prompt, answer_ids, request.heads)
        seconds = {"generate": generate_s, "attention": time.perf_counter() - started}
        answered.append(Answered(answer_ids, attention, logprobs, seconds))
    return answered


class AnswerQueue(BatchQueue[AnswerRequest, Answered]):
    """Computes Sources answers for one model, generating those that wait together in one batch."""

    kind = "answer"

    def joins(self, first: AnswerRequest, request: AnswerRequest) -> bool:
        return max(len(first.prompt.ids), len(request.prompt.ids)) <= SHORT_TOKENS

    def compute(self, requests: list[AnswerRequest]) -> list[Answered]:
        return answer_batch(self.loaded, requests)
