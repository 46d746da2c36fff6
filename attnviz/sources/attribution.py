"""Attribution: which sources (passages or sentences) of a context an answer was read from.

:func:`attribute` takes a greedy, bounded answer from the model (or a pasted answer,
teacher-forced) to a question over passages and scores every (answer token, source)
pair by up to three methods:

* ``attention``: attention mass from the answer into each source, from the heads that
  do retrieval in this model (chosen by calibration on synthetic cases made by code and
  cached on disk), each head's mass taken as a share of what it gives to sources, so
  sinks and the chat template drop out;
* ``naive``: mean attention mass over all layers and heads (the baseline);
* ``ablation``: the drop in each answer token's log-probability when a source is removed
  (leave-one-out for a few sources, random subsets with a linear surrogate for many;
  the faithful reference, see :mod:`attnviz.sources.ablation`).

Attention is reduced to per-source sums while the forward pass runs
(:mod:`attnviz.sources.attention`); heads come from :mod:`attnviz.sources.calibration`;
agreement and faithfulness metrics live in :mod:`attnviz.sources.agreement`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from attnviz.models.loading import LoadedModel
from attnviz.sources.ablation import DEFAULT_PASSES, MAX_LEAVE_ONE_OUT, SourceAblation, ablate_sources
from attnviz.sources.answers import Answered, AnswerRequest, answer_batch
from attnviz.sources.attention import Head, PassageAttention, aggregate, retrieval_scores
from attnviz.sources.calibration import Calibration, calibration
from attnviz.sources.passages import PassagePrompt, Progress, Source, build_prompt
from attnviz.tracing.inputs import PromptError
from attnviz.tracing.tokens import display_tokens

METHODS = ("attention", "naive", "ablation")
DEFAULT_MAX_NEW_TOKENS = 32
MAX_ANSWER_TOKENS = 128


@dataclass(frozen=True)
class Attribution:
    """An answer and its attribution over the sources (passages or sentences) of a prompt.

    ``scores`` maps a method to a [answer_tokens, sources] matrix; ``logprobs`` [answer_tokens]
    are the answer's token log-probabilities with every source present; ``answer_origin`` is
    ``"generated"`` (by this model, greedily) or ``"pasted"`` (given, teacher-forced);
    ``seconds`` is the time each step took (generation under ``generate``).
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
    answer_origin: str = "generated"
    calibration: Calibration | None = None
    ablation: SourceAblation | None = None

    @property
    def granularity(self) -> str:
        return self.prompt.granularity

    @property
    def sources(self) -> tuple[Source, ...]:
        return self.prompt.sources

    @property
    def labels(self) -> list[str]:
        """``[2]`` or ``[2.3]`` (passage 2, sentence 3) for every source."""
        return [self.prompt.source_label(i) for i in range(len(self.sources))]

    def source_text(self, index: int) -> str:
        return self.sources[index].text(self.passages)

    def passage_scores(self, method: str, rows: slice = slice(None)) -> np.ndarray:
        """One score per source [sources] of method ``method``, over the answer tokens ``rows``."""
        return passage_scores(self.scores[method][rows], method)

    def ranking(self, method: str) -> np.ndarray:
        """Source indices, most attributed first."""
        return ranking(self.passage_scores(method))


def passage_scores(matrix: np.ndarray, method: str) -> np.ndarray:
    """[answer_tokens, sources] -> [sources]: total log-prob drop for ablation, mean share for attention."""
    return matrix.sum(axis=0) if method == "ablation" else matrix.mean(axis=0)


def ranking(scores: np.ndarray) -> np.ndarray:
    """Source indices by score, highest first (ties keep source order)."""
    return np.argsort(-np.asarray(scores), kind="stable")


def tokenize_answer(loaded: LoadedModel, answer: str) -> np.ndarray:
    """Token ids of a pasted answer; PromptError if empty or longer than MAX_ANSWER_TOKENS."""
    if not answer.strip():
        raise PromptError(
            "The pasted answer is empty: type the answer to attribute, or let the model generate one."
        )
    with loaded.lock:
        ids = np.asarray(
            loaded.tokenizer(answer.strip(), add_special_tokens=False)["input_ids"], dtype=np.int64
        )
    if len(ids) > MAX_ANSWER_TOKENS:
        raise PromptError(
            f"The pasted answer has {len(ids)} tokens; at most {MAX_ANSWER_TOKENS} can be attributed."
        )
    return ids


def answer_text(loaded: LoadedModel, answer_ids: np.ndarray) -> str:
    """The text of generated answer ids (special tokens dropped, stripped)."""
    with loaded.lock:
        return loaded.tokenizer.decode(answer_ids, skip_special_tokens=True).strip()


def _stage(progress: Progress | None, start: float, end: float) -> Progress | None:
    """``progress`` for one step that covers the fraction [start, end] of the whole run."""
    if progress is None:
        return None
    return lambda done, what: progress(start + (end - start) * done, what)


def attribute(
    loaded: LoadedModel,
    question: str,
    passages: Sequence[str],
    method: str | Sequence[str] = METHODS,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    answer: str | None = None,
    heads: Sequence[Head] | None = None,
    granularity: str = "passage",
    passes: int = DEFAULT_PASSES,
    max_leave_one_out: int = MAX_LEAVE_ONE_OUT,
    progress: Progress | None = None,
    answers: Callable[[AnswerRequest], Answered] | None = None,
) -> Attribution:
    """Answer ``question`` from ``passages`` (greedy) and score answer tokens x sources by each method.

    ``answer`` skips generation and attributes that text instead (teacher forcing);
    ``heads`` overrides the calibrated retrieval heads (calibration runs once per model,
    then comes from disk); ``granularity`` is ``"passage"`` or ``"sentence"``; ``passes``
    bounds subset ablation beyond ``max_leave_one_out`` sources. The prompt's length is
    checked before any model work. ``progress(done, what)`` hears about slow steps. ``answers`` computes
    the answer and its attention pass (default: here and now; a server passes its
    :class:`attnviz.sources.answers.AnswerQueue`, which batches the answers of sessions asking together).
    Ablation, when asked for, runs after that (:func:`check_by_ablation`).
    """
    methods = (method,) if isinstance(method, str) else tuple(method)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise PromptError(f"Unknown attribution method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    if loaded.kind != "decoder":
        raise PromptError(
            f"'{loaded.info.name}' is not a decoder, so it cannot generate an answer to attribute."
        )
    pasted = None if answer is None else tokenize_answer(loaded, answer)
    reserve = max_new_tokens if pasted is None else len(pasted)
    prompt = build_prompt(loaded, question, passages, granularity, reserve=reserve)
    calibrated = None
    if "attention" in methods and heads is None:
        calibrated = calibration(loaded, progress=_stage(progress, 0.0, 0.5))
        heads = calibrated.heads
    chosen = tuple(heads) if "attention" in methods and heads is not None else ()
    if progress is not None:
        progress(0.5, "Generating the answer" if pasted is None else "Scoring the pasted answer")
    request = AnswerRequest(prompt, chosen, max_new_tokens, pasted)
    answered = answers(request) if answers is not None else answer_batch(loaded, [request])[0]
    if answered.attention is None or answered.logprobs is None:
        raise PromptError("The model gave an empty answer, so there is nothing to attribute.")
    answer_ids, attention, logprobs = answered.answer_ids, answered.attention, answered.logprobs
    scores: dict[str, np.ndarray] = {}
    if "attention" in methods:
        scores["attention"] = retrieval_scores(attention, chosen)
    if "naive" in methods:
        scores["naive"] = aggregate(attention)
    with loaded.lock:
        tokens, _ = display_tokens(loaded.tokenizer, answer_ids)
    result = Attribution(
        question=prompt.question,
        passages=prompt.passages,
        answer=answer_text(loaded, answer_ids) if answer is None else answer.strip(),
        answer_ids=answer_ids,
        answer_tokens=tokens,
        prompt=prompt,
        scores=scores,
        attention=attention,
        heads=chosen,
        logprobs=logprobs,
        seconds=dict(answered.seconds),
        answer_origin="generated" if answer is None else "pasted",
        calibration=calibrated,
    )
    if "ablation" not in methods:
        return result
    stage = _stage(progress, 0.55, 1.0)
    return check_by_ablation(
        loaded, result, passes=passes, max_leave_one_out=max_leave_one_out, progress=stage
    )


def check_by_ablation(
    loaded: LoadedModel,
    result: Attribution,
    *,
    passes: int = DEFAULT_PASSES,
    max_leave_one_out: int = MAX_LEAVE_ONE_OUT,
    progress: Progress | None = None,
) -> Attribution:
    """``result`` with ablation scores added: the faithful check of its attention, one forward pass per source
    (or ``passes`` random subsets beyond ``max_leave_one_out`` sources; see :func:`planned_passes`)."""
    started = time.perf_counter()
    ablation = ablate_sources(
        loaded, result.prompt, result.answer_ids, result.logprobs, passes=passes,
        max_leave_one_out=max_leave_one_out, progress=progress,
    )  # fmt: skip
    return replace(
        result,
        scores={**result.scores, "ablation": ablation.drops},
        seconds={**result.seconds, "ablation": time.perf_counter() - started},
        ablation=ablation,
    )


def export_rows(result: Attribution, settings: dict[str, object] | None = None) -> list[dict[str, object]]:
    """One row per (answer token, source) with every method's score, for CSV export.

    ``settings`` (how the page aggregated the scores shown) are repeated on every row, so the
    file says what produced it.
    """
    labels = result.labels
    return [
        {
            **(settings or {}),
            "granularity": result.granularity,
            "answer_origin": result.answer_origin,
            "token_index": t,
            "token": token,
            "source": labels[s],
            "passage": source.passage + 1,
            "start": source.start,
            "end": source.end,
            **{method: float(matrix[t, s]) for method, matrix in result.scores.items()},
        }
        for t, token in enumerate(result.answer_tokens)
        for s, source in enumerate(result.sources)
    ]


def export_json(
    result: Attribution, settings: dict[str, object] | None = None, rows: slice = slice(None)
) -> dict[str, object]:
    """The answer with its attributions (per source and per answer token) and how they were made, as JSON data.

    ``scores`` are per source over the answer tokens ``rows`` (the page's focus); ``settings`` say how
    the page aggregated them, so an export of a re-aggregated ``result`` holds exactly what was shown.
    """
    return {
        "settings": settings or {},
        "question": result.question,
        "passages": list(result.passages),
        "granularity": result.granularity,
        "sources": [
            {
                "label": label,
                "passage": s.passage + 1,
                "start": s.start,
                "end": s.end,
                "text": result.source_text(i),
            }
            for i, (label, s) in enumerate(zip(result.labels, result.sources, strict=True))
        ],
        "answer": result.answer,
        "answer_origin": result.answer_origin,
        "answer_logprob": round(float(result.logprobs.sum()), 6),
        "answer_tokens": list(result.answer_tokens),
        "answer_logprobs": result.logprobs.round(6).tolist(),
        "heads": [list(head) for head in result.heads],
        "calibration": None if result.calibration is None else result.calibration.export(),
        "ablation": None
        if result.ablation is None
        else {"kind": result.ablation.kind, "forward_passes": result.ablation.passes},
        "scores": {method: result.passage_scores(method, rows).round(6).tolist() for method in result.scores},
        "token_scores": {method: matrix.round(6).tolist() for method, matrix in result.scores.items()},
        "seconds": {name: round(value, 4) for name, value in result.seconds.items()},
    }
