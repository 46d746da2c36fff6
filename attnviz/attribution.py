"""Attribution: which passages of a context an answer was read from, and how faithful that is.

:func:`attribute` generates a greedy, bounded answer to a question over passages and
scores every (answer token, passage) pair by up to three methods:

* ``attention``: attention mass from the answer into each passage, from the heads that
  do retrieval in this model (chosen by :func:`calibrate` on synthetic cases made by
  code and cached on disk), each head's mass taken as a share of what it gives to
  passages, so sinks and the chat template drop out;
* ``naive``: mean attention mass over all layers and heads (the baseline);
* ``ablation``: leave-one-passage-out, the drop in each answer token's log-probability
  when that passage is removed (one forward pass per passage; the faithful reference).

Attention is reduced to per-passage sums while the forward pass runs
(:mod:`attnviz.passage_attention`); heads come from :mod:`attnviz.calibration`;
agreement and faithfulness metrics live in :mod:`attnviz.agreement`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from attnviz.calibration import calibration
from attnviz.loading import LoadedModel
from attnviz.passage_attention import (
    Head,
    PassageAttention,
    aggregate,
    answer_logprobs,
    passage_attention,
    retrieval_scores,
)
from attnviz.passages import PassagePrompt, build_prompt
from attnviz.tokens import display_tokens
from attnviz.trace import PromptError

METHODS = ("attention", "naive", "ablation")
DEFAULT_MAX_NEW_TOKENS = 32


@dataclass(frozen=True)
class Attribution:
    """An answer and its attribution over passages.

    ``scores`` maps a method to a [answer_tokens, passages] matrix; ``logprobs`` [answer_tokens]
    are the answer's token log-probabilities with every passage present; ``seconds`` is the
    time each method took (generation under ``generate``).
    """

    question: str
    passages: tuple[str, ...]
    answer: str
    answer_ids: np.ndarray
    answer_tokens: tuple[str, ...]
    prompt: PassagePrompt
    scores: dict[str, np.ndarray]
    attention: PassageAttention
    heads: tuple[Head, ...]
    logprobs: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)

    def passage_scores(self, method: str, rows: slice = slice(None)) -> np.ndarray:
        """One score per passage [passages] of method ``method``, over the answer tokens ``rows``."""
        return passage_scores(self.scores[method][rows], method)

    def ranking(self, method: str) -> np.ndarray:
        """Passage indices, most attributed first."""
        return ranking(self.passage_scores(method))


def passage_scores(matrix: np.ndarray, method: str) -> np.ndarray:
    """[answer_tokens, passages] -> [passages]: total log-prob drop for ablation, mean share for attention."""
    return matrix.sum(axis=0) if method == "ablation" else matrix.mean(axis=0)


def ranking(scores: np.ndarray) -> np.ndarray:
    """Passage indices by score, highest first (ties keep passage order)."""
    return np.argsort(-np.asarray(scores), kind="stable")


def generate_answer(loaded: LoadedModel, prompt_ids: np.ndarray, max_new_tokens: int) -> np.ndarray:
    """Greedy answer ids (without the end-of-turn token), at most ``max_new_tokens`` long."""
    generation = loaded.model.generation_config
    eos = generation.eos_token_id
    pad = generation.pad_token_id if generation.pad_token_id is not None else eos
    with loaded.lock, torch.inference_mode():
        output = loaded.model.generate(
            torch.as_tensor(prompt_ids)[None],
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad,
        )
    answer = output[0, len(prompt_ids) :].numpy()
    stops = set(np.atleast_1d(eos).tolist()) if eos is not None else set()
    stops |= set(loaded.tokenizer.all_special_ids)
    end = next((i for i, token in enumerate(answer) if int(token) in stops), len(answer))
    return answer[:end].astype(np.int64)


def leave_one_out(
    loaded: LoadedModel, question: str, passages: Sequence[str], answer_ids: np.ndarray, base: np.ndarray
) -> np.ndarray:
    """[answer_tokens, passages] drop of each answer token's log-prob when one passage is removed."""
    drops = np.zeros((len(answer_ids), len(passages)), dtype=np.float32)
    for index in range(len(passages)):
        rest = [p for i, p in enumerate(passages) if i != index]
        if rest:
            ids = build_prompt(loaded, question, rest).ids
        else:
            ids = build_prompt(loaded, question, ["(no passage)"]).ids
        drops[:, index] = base - answer_logprobs(loaded, ids, answer_ids)
    return drops


def attribute(
    loaded: LoadedModel,
    question: str,
    passages: Sequence[str],
    method: str | Sequence[str] = METHODS,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    answer: str | None = None,
    heads: Sequence[Head] | None = None,
) -> Attribution:
    """Answer ``question`` from ``passages`` (greedy) and score answer tokens x passages by each method.

    ``answer`` skips generation and attributes that text instead; ``heads`` overrides the
    calibrated retrieval heads (calibration runs once per model, then comes from disk).
    """
    methods = (method,) if isinstance(method, str) else tuple(method)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise PromptError(f"Unknown attribution method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    if loaded.kind != "decoder":
        raise PromptError(
            f"'{loaded.info.name}' is not a decoder, so it cannot generate an answer to attribute."
        )
    prompt = build_prompt(loaded, question, passages)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if answer is None:
        answer_ids = generate_answer(loaded, prompt.ids, max_new_tokens)
    else:
        with loaded.lock:
            answer_ids = np.asarray(
                loaded.tokenizer(answer, add_special_tokens=False)["input_ids"], dtype=np.int64
            )
    seconds["generate"] = time.perf_counter() - started
    if len(answer_ids) == 0:
        raise PromptError("The model gave an empty answer, so there is nothing to attribute.")
    started = time.perf_counter()
    attention, logprobs = passage_attention(loaded, prompt, answer_ids)
    seconds["attention"] = time.perf_counter() - started
    scores: dict[str, np.ndarray] = {}
    chosen: tuple[Head, ...] = ()
    if "attention" in methods:
        chosen = tuple(heads) if heads is not None else calibration(loaded).heads
        scores["attention"] = retrieval_scores(attention, chosen)
    if "naive" in methods:
        scores["naive"] = aggregate(attention)
    if "ablation" in methods:
        started = time.perf_counter()
        scores["ablation"] = leave_one_out(loaded, question, prompt.passages, answer_ids, logprobs)
        seconds["ablation"] = time.perf_counter() - started
    with loaded.lock:
        answer_text = loaded.tokenizer.decode(answer_ids, skip_special_tokens=True).strip()
        tokens, _ = display_tokens(loaded.tokenizer, answer_ids)
    return Attribution(
        question=prompt.question,
        passages=prompt.passages,
        answer=answer_text,
        answer_ids=answer_ids,
        answer_tokens=tokens,
        prompt=prompt,
        scores=scores,
        attention=attention,
        heads=chosen,
        logprobs=logprobs,
        seconds=seconds,
    )


def export_rows(result: Attribution) -> list[dict[str, object]]:
    """One row per (answer token, passage) with every method's score, for CSV export."""
    return [
        {
            "token_index": t,
            "token": token,
            "passage": p + 1,
            **{method: float(matrix[t, p]) for method, matrix in result.scores.items()},
        }
        for t, token in enumerate(result.answer_tokens)
        for p in range(len(result.passages))
    ]


def export_json(result: Attribution) -> dict[str, object]:
    """The answer with its attributions (per passage and per answer token) as plain JSON data."""
    return {
        "question": result.question,
        "passages": list(result.passages),
        "answer": result.answer,
        "answer_tokens": list(result.answer_tokens),
        "answer_logprobs": result.logprobs.round(6).tolist(),
        "heads": [list(head) for head in result.heads],
        "scores": {method: result.passage_scores(method).round(6).tolist() for method in result.scores},
        "token_scores": {method: matrix.round(6).tolist() for method, matrix in result.scores.items()},
        "seconds": {name: round(value, 4) for name, value in result.seconds.items()},
    }
