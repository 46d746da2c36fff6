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

Attention is reduced to per-passage sums inside the recorder while the forward pass
runs, so no layers x heads x n x n tensor is ever kept.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from attnviz.hooks import AttentionCall, Hooks
from attnviz.loading import LoadedModel, cache_root
from attnviz.passages import INSTRUCTION, PassagePrompt, build_prompt
from attnviz.tokens import display_tokens
from attnviz.trace import PromptError, forward

METHODS = ("attention", "naive", "ablation")
DEFAULT_MAX_NEW_TOKENS = 32
CALIBRATION_VERSION = 1
CALIBRATION_CASES = 32
HEAD_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)

Head = tuple[int, int]


@dataclass(frozen=True)
class PassageAttention:
    """Attention from answer tokens into passages, per layer and head, reduced while tracing.

    ``mass`` [layers, heads, answer_tokens, passages] is the attention weight the query
    predicting each answer token puts on each passage's tokens; ``value_mass`` is the same
    with every key weighted by its value vector's norm (as a share of the weighted total);
    ``sink`` [layers, heads, answer_tokens] is the weight on the first token.
    """

    mass: np.ndarray
    value_mass: np.ndarray
    sink: np.ndarray


@dataclass(frozen=True)
class Calibration:
    """Which heads of a model do retrieval, found on synthetic cases by :func:`calibrate`.

    ``head_accuracy`` [layers, heads] is how often each head's top passage matched the
    leave-one-out top passage; ``heads`` are the chosen ones, best first.
    """

    model_name: str
    heads: tuple[Head, ...]
    head_accuracy: np.ndarray
    n_cases: int
    accuracy: float


@dataclass(frozen=True)
class Agreement:
    """How two methods' passage rankings agree: Spearman rank correlation and top-1 match."""

    spearman: float
    top1_match: bool


@dataclass(frozen=True)
class Faithfulness:
    """Answer log-prob drop from removing the top attention passage vs a random other passage."""

    top_passage: int
    top_drop: float
    random_passage: int
    random_drop: float
    mean_other_drop: float


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

    def passage_scores(self, method: str) -> np.ndarray:
        """One score per passage [passages]: total log-prob drop for ablation, mean share for attention."""
        matrix = self.scores[method]
        return matrix.sum(axis=0) if method == "ablation" else matrix.mean(axis=0)

    def ranking(self, method: str) -> np.ndarray:
        """Passage indices, most attributed first."""
        return np.argsort(-self.passage_scores(method), kind="stable")


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


def _sequence(loaded: LoadedModel, prompt_ids: np.ndarray, answer_ids: np.ndarray) -> dict[str, object]:
    """Model inputs for prompt + answer, asking only for the logits that predict answer tokens when possible."""
    ids = torch.as_tensor(np.concatenate([prompt_ids, answer_ids]))[None]
    inputs: dict[str, object] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if "logits_to_keep" in inspect.signature(loaded.model.forward).parameters:
        inputs["logits_to_keep"] = len(answer_ids) + 1  # [n, vocab] logits would be 400 MB at 2,000 tokens
    return inputs


def _answer_logprobs(logits: torch.Tensor, answer_ids: np.ndarray) -> np.ndarray:
    """Log-probability [answer_tokens] of each answer token given everything before it (logits end at the answer)."""
    predicting = logits[0, -(len(answer_ids) + 1) : -1].float()
    logprobs = torch.log_softmax(predicting, dim=-1)
    return logprobs[torch.arange(len(answer_ids)), torch.as_tensor(answer_ids)].numpy()


def answer_logprobs(loaded: LoadedModel, prompt_ids: np.ndarray, answer_ids: np.ndarray) -> np.ndarray:
    """Log-probability of each answer token after ``prompt_ids`` (teacher forcing, one fast pass)."""
    outputs = forward(loaded, _sequence(loaded, prompt_ids, answer_ids))
    return _answer_logprobs(outputs.logits, answer_ids)


def passage_attention(
    loaded: LoadedModel, prompt: PassagePrompt, answer_ids: np.ndarray
) -> tuple[PassageAttention, np.ndarray]:
    """One forward pass over prompt + answer, keeping per-passage attention sums and the answer's log-probs."""
    n_prompt = len(prompt.ids)
    n = n_prompt + len(answer_ids)
    rows = torch.arange(n_prompt - 1, n - 1)
    membership = torch.zeros(n, len(prompt.spans))
    for index, (start, end) in enumerate(prompt.spans):
        membership[start:end, index] = 1.0
    mass: dict[int, torch.Tensor] = {}
    value_mass: dict[int, torch.Tensor] = {}
    sink: dict[int, torch.Tensor] = {}

    def reduce(call: AttentionCall) -> None:
        if call.site.stack != "decoder":
            return
        weights = call.weights[0, :, rows, :].float()  # [heads, answer, keys]
        weighted = weights * call.value[0].float().norm(dim=-1)[:, None, :]
        layer = call.site.layer
        mass[layer] = weights @ membership
        value_mass[layer] = (weighted @ membership) / weighted.sum(-1, keepdim=True).clamp_min(1e-12)
        sink[layer] = weights[:, :, 0]

    outputs = forward(loaded, _sequence(loaded, prompt.ids, answer_ids), Hooks(record=reduce))
    layers = sorted(mass)
    attention = PassageAttention(
        mass=torch.stack([mass[layer] for layer in layers]).numpy(),
        value_mass=torch.stack([value_mass[layer] for layer in layers]).numpy(),
        sink=torch.stack([sink[layer] for layer in layers]).numpy(),
    )
    return attention, _answer_logprobs(outputs.logits, answer_ids)


def passage_shares(mass: np.ndarray) -> np.ndarray:
    """Each head's attention over passages as shares summing to 1 (what it gives elsewhere drops out)."""
    return mass / np.clip(mass.sum(axis=-1, keepdims=True), 1e-12, None)


def aggregate(
    attention: PassageAttention,
    *,
    heads: Iterable[Head] | None = None,
    layers: Iterable[int] | None = None,
    value_weighted: bool = False,
    exclude_sink: bool = False,
    shares: bool = False,
) -> np.ndarray:
    """[answer_tokens, passages] mean over the chosen heads (or layers; default all) of their passage attention.

    ``exclude_sink`` renormalises each head by the weight left after the first token;
    ``shares`` takes each head's passage attention as shares of its passage total.
    """
    source = attention.value_mass if value_weighted else attention.mass
    if exclude_sink:
        source = source / np.clip(1.0 - attention.sink, 1e-6, None)[..., None]
    if shares:
        source = passage_shares(source)
    n_layers, n_heads = source.shape[:2]
    chosen = np.zeros((n_layers, n_heads), dtype=bool)
    if heads is not None:
        for layer, head in heads:
            chosen[layer, head] = True
    else:
        layer_list = list(range(n_layers)) if layers is None else list(layers)
        chosen[layer_list] = True
    if not chosen.any():
        raise PromptError("Choose at least one layer or head to aggregate.")
    return source[chosen].mean(axis=0)


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


def retrieval_scores(attention: PassageAttention, heads: Sequence[Head]) -> np.ndarray:
    """[answer_tokens, passages] calibrated attention: the retrieval heads' passage shares, averaged."""
    return aggregate(attention, heads=heads, exclude_sink=True, shares=True)


# --- agreement and faithfulness -------------------------------------------------------------


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties given their average rank."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two score vectors (0 when either is constant)."""
    ra, rb = _ranks(np.asarray(a, dtype=np.float64)), _ranks(np.asarray(b, dtype=np.float64))
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def agreement(scores: np.ndarray, reference: np.ndarray) -> Agreement:
    """Agreement of two [passages] score vectors: rank correlation and whether their top passage is the same."""
    return Agreement(
        spearman=spearman(scores, reference), top1_match=bool(np.argmax(scores) == np.argmax(reference))
    )


def faithfulness(scores: np.ndarray, drops: np.ndarray, seed: int = 0) -> Faithfulness:
    """Log-prob drop [passages] ``drops`` of the top-``scores`` passage vs a random (seeded) other passage."""
    top = int(np.argmax(scores))
    others = [i for i in range(len(scores)) if i != top] or [top]
    pick = random.Random(seed).choice(others)
    return Faithfulness(top, float(drops[top]), pick, float(drops[pick]), float(np.mean(drops[others])))


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


# --- calibration on synthetic cases ---------------------------------------------------------

_SYLLABLES = (
    "ka", "lo", "mi", "ren", "tas", "vo", "bel", "dor", "fi", "gan", "hu", "jas", "mor", "nel",
    "pra", "sil", "tor", "ul", "ves", "zan", "qui", "bra", "den", "ost",
)  # fmt: skip
_VALUES = {
    "animal": ("parrot", "tortoise", "ferret", "goat", "hamster", "lizard", "rabbit", "pigeon"),
    "colour": ("green", "orange", "violet", "yellow", "crimson", "turquoise", "grey", "pink"),
    "drink": ("mint tea", "lemonade", "black coffee", "hot chocolate", "apple juice", "buttermilk"),
    "instrument": ("trumpet", "cello", "banjo", "accordion", "harp", "flute", "drums", "oboe"),
    "food": ("lentil soup", "fried rice", "plum cake", "fish pie", "onion tart", "dumplings"),
}
# (fact template, question template, value kind); {e} is an invented name, {x} the answer.
_RELATIONS = (
    ("{e} keeps a pet {x} at home.", "What pet does {e} keep?", "animal"),
    ("The favourite colour of {e} is {x}.", "What is the favourite colour of {e}?", "colour"),
    ("{e} was born in the town of {x}.", "In which town was {e} born?", "town"),
    ("{e} owns exactly {x} bicycles.", "How many bicycles does {e} own?", "number"),
    ("Every morning {e} drinks {x}.", "What does {e} drink every morning?", "drink"),
    ("{e} plays the {x} in a small band.", "Which instrument does {e} play?", "instrument"),
    ("For dinner, {e} always cooks {x}.", "What does {e} cook for dinner?", "food"),
    ("The boat owned by {e} is called the {x}.", "What is the name of the boat owned by {e}?", "town"),
)
_FILLERS = (
    "The river floods the valley almost every spring.",
    "Copper is a good conductor of electricity.",
    "The library opens at nine and closes at six.",
    "Many birds fly south before the winter begins.",
    "The train to the coast takes about three hours.",
    "Bread rises because yeast produces gas.",
    "The city council meets on the first Monday of the month.",
    "Mountains are often colder at the top than at the bottom.",
    "The market sells fresh vegetables on Saturdays.",
    "Glass is made by melting sand at a high temperature.",
    "The football season ends in late May.",
    "Tea was first drunk in China thousands of years ago.",
)


@dataclass(frozen=True)
class Case:
    """A question over passages whose answer lies in passage ``gold`` and contains ``answer_contains``."""

    question: str
    passages: tuple[str, ...]
    gold: int
    answer_contains: str


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables)).capitalize()


def _value(rng: random.Random, kind: str) -> str:
    if kind == "town":
        return _word(rng, 3)
    if kind == "number":
        return str(rng.randint(12, 97))
    return rng.choice(_VALUES[kind])


def synthetic_cases(n: int, seed: int = 0) -> list[Case]:
    """Templated fact-lookup cases with invented names, one same-kind distractor and filler passages."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        fact, question, kind = rng.choice(_RELATIONS)
        entity, other = f"{_word(rng, 2)} {_word(rng, 2)}", f"{_word(rng, 2)} {_word(rng, 2)}"
        answer = _value(rng, kind)
        decoy = _value(rng, kind)
        while decoy == answer:
            decoy = _value(rng, kind)
        passages = [fact.format(e=entity, x=answer), fact.format(e=other, x=decoy)]
        passages += rng.sample(_FILLERS, rng.randint(1, 3))
        rng.shuffle(passages)
        gold = passages.index(fact.format(e=entity, x=answer))
        cases.append(Case(question.format(e=entity), tuple(passages), gold, answer))
    return cases


def answered(answer: str, case: Case) -> bool:
    """Whether an answer contains the expected text (case-insensitive)."""
    return case.answer_contains.lower() in answer.lower()


def choose_heads(
    shares: Sequence[np.ndarray], reference: Sequence[int], counts: Sequence[int] = HEAD_COUNTS
) -> tuple[tuple[Head, ...], np.ndarray, float]:
    """Pick retrieval heads: rank heads by how often their top passage is the ``reference`` one, keep the best k.

    ``shares`` holds one [layers, heads, answer_tokens, passages] array per case. k is the
    count whose averaged heads match the reference most often (larger k on ties).
    Returns (heads best first, per-head accuracy [layers, heads], accuracy of the chosen set).
    """
    per_case = [s.mean(axis=2) for s in shares]  # [layers, heads, passages]
    hits = np.mean([np.argmax(s, axis=-1) == ref for s, ref in zip(per_case, reference, strict=True)], axis=0)
    margin = np.mean([s[..., ref] for s, ref in zip(per_case, reference, strict=True)], axis=0)
    order = np.lexsort((-margin.ravel(), -hits.ravel()))
    n_heads = hits.shape[1]
    ranked = [(int(i // n_heads), int(i % n_heads)) for i in order]
    best: tuple[float, int] = (-1.0, 0)
    for k in counts:
        if k > len(ranked):
            break
        rows, cols = zip(*ranked[:k], strict=True)
        accuracy = float(
            np.mean(
                [
                    np.argmax(s[rows, cols].mean(axis=0)) == ref
                    for s, ref in zip(per_case, reference, strict=True)
                ]
            )
        )
        if accuracy >= best[0]:
            best = (accuracy, k)
    return tuple(ranked[: best[1]]), hits, best[0]


def calibrate(loaded: LoadedModel, n_cases: int = CALIBRATION_CASES, seed: int = 0) -> Calibration:
    """Find the retrieval heads: those whose attention, while the answer is written, lands on its passage.

    Each synthetic case is one forward pass with its known answer teacher-forced, so the
    heads that fetch (copy) the answer from context are found without generating.
    """
    shares, reference = [], []
    for case in synthetic_cases(n_cases, seed):
        prompt = build_prompt(loaded, case.question, case.passages)
        with loaded.lock:
            answer_ids = np.asarray(
                loaded.tokenizer(case.answer_contains, add_special_tokens=False)["input_ids"]
            )
        attention, _ = passage_attention(loaded, prompt, answer_ids)
        shares.append(passage_shares(attention.mass / np.clip(1.0 - attention.sink, 1e-6, None)[..., None]))
        reference.append(case.gold)
    heads, head_accuracy, accuracy = choose_heads(shares, reference)
    return Calibration(loaded.info.name, heads, head_accuracy, len(shares), accuracy)


def _calibration_path(loaded: LoadedModel) -> Path:
    """Cache file keyed by model name, shape and the calibration recipe (instruction, version)."""
    recipe = f"{CALIBRATION_VERSION}|{INSTRUCTION}|{loaded.info.name}|{loaded.n_layers}x{loaded.n_heads}"
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", loaded.info.name).strip("_")[-60:] or "model"
    return cache_root() / "calibration" / f"{safe}-{digest}.json"


def calibration(loaded: LoadedModel) -> Calibration:
    """The model's retrieval heads: read from the disk cache, or calibrated once and saved."""
    path = _calibration_path(loaded)
    if path.exists():
        data = json.loads(path.read_text())
        return Calibration(
            model_name=data["model_name"],
            heads=tuple((int(layer), int(head)) for layer, head in data["heads"]),
            head_accuracy=np.asarray(data["head_accuracy"]),
            n_cases=int(data["n_cases"]),
            accuracy=float(data["accuracy"]),
        )
    result = calibrate(loaded)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**asdict(result), "head_accuracy": result.head_accuracy.tolist()}
    staging = path.with_suffix(".partial")
    staging.write_text(json.dumps(payload))
    staging.replace(path)  # atomic: a concurrent reader never sees half a file
    return result


# --- evaluation ----------------------------------------------------------------------------


def case_from_dict(row: dict[str, object]) -> Case:
    """A Case from a rag_demo-style record: question, passages, gold (passage index), answer_contains."""
    return Case(str(row["question"]), tuple(row["passages"]), int(row["gold"]), str(row["answer_contains"]))


def read_cases(path: Path) -> list[Case]:
    """Cases from a .jsonl file of rag_demo-style records."""
    return [
        case_from_dict(json.loads(line))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def evaluate_rag(loaded: LoadedModel, cases: Sequence[Case | dict[str, object]]) -> dict[str, object]:
    """Top-1 accuracy (passage holding the answer) and mean seconds of each method, on the cases answered correctly.

    ``cases`` are Case objects or rag_demo records (dicts).
    """
    calibrated = calibration(loaded)
    rows = []
    for case in (c if isinstance(c, Case) else case_from_dict(c) for c in cases):
        result = attribute(loaded, case.question, case.passages, method=METHODS)
        rows.append(
            {
                "question": case.question,
                "answer": result.answer,
                "correct": answered(result.answer, case),
                "gold": case.gold,
                **{f"top1_{m}": int(result.ranking(m)[0]) for m in METHODS},
                "spearman_attention_ablation": agreement(
                    result.passage_scores("attention"), result.passage_scores("ablation")
                ).spearman,
                **{f"seconds_{name}": value for name, value in result.seconds.items()},
            }
        )
    correct = [row for row in rows if row["correct"]]
    summary: dict[str, object] = {
        "model": loaded.info.name,
        "cases": len(rows),
        "answered_correctly": len(correct),
        "calibration": {"heads": [list(h) for h in calibrated.heads], "cases": calibrated.n_cases,
                        "accuracy": calibrated.accuracy},
    }  # fmt: skip
    for method in METHODS:
        hits = [row[f"top1_{method}"] == row["gold"] for row in correct]
        summary[f"top1_{method}"] = float(np.mean(hits)) if hits else float("nan")
    for name in ("generate", "attention", "ablation"):
        summary[f"seconds_{name}"] = float(np.mean([row[f"seconds_{name}"] for row in rows])) if rows else 0.0
    summary["rows"] = rows
    return summary
