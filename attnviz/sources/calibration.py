"""Calibration: find the heads that do retrieval in a model, on synthetic cases made by code.

Each case is a fact-lookup question over passages whose answer lies in one known passage.
The answer is teacher-forced, and the heads whose attention (while the answer is written)
lands on that passage are the retrieval heads. Heads are chosen on one half of the cases
and their accuracy is reported on the other, held-out half. Results are cached on disk
under a fingerprint of everything they depend on.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from attnviz.heads.roles import RetrievalInputs
from attnviz.models.loading import LoadedModel
from attnviz.models.registry import cache_root
from attnviz.sources.attention import Head, passage_attention, passage_shares
from attnviz.sources.passages import INSTRUCTION, Progress, build_prompt

CALIBRATION_VERSION = 2
CALIBRATION_CASES = 40  # half choose the heads, half measure them
HEAD_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


@dataclass(frozen=True)
class Calibration:
    """Which heads of a model do retrieval, found on synthetic cases by :func:`calibrate`.

    ``head_accuracy`` [layers, heads] is how often each head's top passage was the one
    holding the answer on the ``n_choose`` cases that chose the heads; ``heads`` are the
    chosen ones, best first. ``choice_accuracy`` is the chosen set's accuracy on those
    cases, ``held_out_accuracy`` on ``n_held_out`` other cases never used to choose.
    """

    model_name: str
    heads: tuple[Head, ...]
    head_accuracy: np.ndarray
    n_choose: int
    n_held_out: int
    choice_accuracy: float
    held_out_accuracy: float

    def describe(self) -> str:
        """How the heads were chosen and how well they do, in one sentence."""
        return (
            f"{len(self.heads)} heads chosen on {self.n_choose} synthetic fact-lookup cases (those whose attention, "
            f"while the known answer is written, most often lands on the passage holding it); on {self.n_held_out} "
            f"other cases they find that passage {self.held_out_accuracy:.0%} of the time."
        )

    def export(self) -> dict[str, object]:
        """Plain JSON data: heads, how chosen, accuracies (without the per-head table)."""
        return {
            "heads": [list(head) for head in self.heads],
            "how": self.describe(),
            "choose_cases": self.n_choose,
            "held_out_cases": self.n_held_out,
            "choice_accuracy": round(self.choice_accuracy, 4),
            "held_out_accuracy": round(self.held_out_accuracy, 4),
        }


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


def heads_accuracy(shares: Sequence[np.ndarray], reference: Sequence[int], heads: Sequence[Head]) -> float:
    """How often the mean of ``heads``' passage shares puts the ``reference`` passage first, over cases."""
    rows, cols = zip(*heads, strict=True)
    return float(
        np.mean(
            [
                np.argmax(s[list(rows), list(cols)].mean(axis=(0, 1))) == ref
                for s, ref in zip(shares, reference, strict=True)
            ]
        )
    )


def choose_heads(
    shares: Sequence[np.ndarray], reference: Sequence[int], counts: Sequence[int] = HEAD_COUNTS
) -> tuple[tuple[Head, ...], np.ndarray, float]:
    """Pick retrieval heads: rank heads by how often their top passage is the ``reference`` one, keep the best k.

    ``shares`` holds one [layers, heads, answer_tokens, passages] array per case. k is the
    count whose averaged heads match the reference most often (larger k on ties).
    Returns (heads best first, per-head accuracy [layers, heads], accuracy of the chosen set on these cases).
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
        accuracy = heads_accuracy(shares, reference, ranked[:k])
        if accuracy >= best[0]:
            best = (accuracy, k)
    return tuple(ranked[: best[1]]), hits, best[0]


def split_cases(cases: Sequence[Case]) -> tuple[list[Case], list[Case]]:
    """(cases that choose the heads, held-out cases that measure them): the first half and the rest."""
    half = len(cases) // 2
    return list(cases[:half]), list(cases[half:])


def case_shares(loaded: LoadedModel, case: Case) -> np.ndarray:
    """[layers, heads, answer_tokens, passages] passage shares of every head with the case's answer teacher-forced."""
    prompt = build_prompt(loaded, case.question, case.passages)
    with loaded.lock:
        answer_ids = np.asarray(loaded.tokenizer(case.answer_contains, add_special_tokens=False)["input_ids"])
    attention, _ = passage_attention(loaded, prompt, answer_ids)
    return passage_shares(attention.mass / np.clip(1.0 - attention.sink, 1e-6, None)[..., None])


def calibrate(
    loaded: LoadedModel,
    n_cases: int = CALIBRATION_CASES,
    seed: int = 0,
    progress: Progress | None = None,
) -> Calibration:
    """Find the retrieval heads on half of the synthetic cases and measure them on the other half.

    Each case is one forward pass with its known answer teacher-forced, so the heads that
    fetch (copy) the answer from context are found without generating. ``progress(done, what)``
    is told after every case.
    """
    cases = synthetic_cases(n_cases, seed)
    shares = []
    for number, case in enumerate(cases, start=1):
        shares.append(case_shares(loaded, case))
        if progress is not None:
            progress(number / len(cases), f"Finding retrieval heads: synthetic case {number} of {len(cases)}")
    choose, held_out = split_cases(list(range(len(cases))))
    heads, head_accuracy, accuracy = choose_heads(
        [shares[i] for i in choose], [cases[i].gold for i in choose]
    )
    held = heads_accuracy([shares[i] for i in held_out], [cases[i].gold for i in held_out], heads)
    return Calibration(loaded.info.name, heads, head_accuracy, len(choose), len(held_out), accuracy, held)


def recipe_fingerprint(n_cases: int = CALIBRATION_CASES, seed: int = 0) -> str:
    """Hash of what the synthetic cases and prompts are made from: templates, instruction, seed, count."""
    recipe = json.dumps(
        [
            CALIBRATION_VERSION,
            INSTRUCTION,
            _SYLLABLES,
            _VALUES,
            _RELATIONS,
            _FILLERS,
            HEAD_COUNTS,
            n_cases,
            seed,
        ]
    )
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _calibration_path(loaded: LoadedModel) -> Path:
    """Cache file keyed by the model's fingerprint (weights, tokenizer, chat template) and the recipe."""
    digest = hashlib.sha256(f"{loaded.fingerprint}|{recipe_fingerprint()}".encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", loaded.info.name).strip("_")[-60:] or "model"
    return cache_root() / "calibration" / f"{safe}-{digest}.json"


def is_calibrated(loaded: LoadedModel) -> bool:
    """Whether this model's heads are on disk already (so :func:`calibration` is instant)."""
    return _calibration_path(loaded).exists()


def calibration(loaded: LoadedModel, progress: Progress | None = None, refresh: bool = False) -> Calibration:
    """The model's retrieval heads: read from the disk cache, or calibrated (again, if ``refresh``) and saved."""
    path = _calibration_path(loaded)
    if path.exists() and not refresh:
        data = json.loads(path.read_text())
        data["heads"] = tuple((int(layer), int(head)) for layer, head in data["heads"])
        data["head_accuracy"] = np.asarray(data["head_accuracy"])
        return Calibration(**data)
    result = calibrate(loaded, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**asdict(result), "head_accuracy": result.head_accuracy.tolist()}
    staging = path.with_suffix(".partial")
    staging.write_text(json.dumps(payload))
    staging.replace(path)  # atomic: a concurrent reader never sees half a file
    return result


def atlas_retrieval(loaded: LoadedModel, n_cases: int = 12, seed: int = 1) -> RetrievalInputs | None:
    """The cached retrieval heads and ``n_cases`` fresh synthetic cases as token ids, for the head atlas's
    retrieval role; None when this model has not been calibrated (the atlas never starts a calibration)."""
    if not is_calibrated(loaded):
        return None
    cases = []
    for case in synthetic_cases(n_cases, seed):  # seed 1: cases other than the calibration's own
        prompt = build_prompt(loaded, case.question, case.passages)
        with loaded.lock:
            answer = loaded.tokenizer(case.answer_contains, add_special_tokens=False)["input_ids"]
        cases.append((tuple(int(i) for i in prompt.ids), tuple(int(i) for i in answer)))
    return RetrievalInputs(calibration(loaded).heads, tuple(cases))
