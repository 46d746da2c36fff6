"""Head atlas: what every head does across a corpus, as statistics with intervals, roles and ablation checks.

Each corpus prompt is one forward pass whose attention calls are reduced on the spot (the
long-prompt summary's :class:`attnviz.heads.summary.StatSums` plus token-matching sums), so no
map is kept: per prompt, layers × heads × statistics numbers. A statistic is averaged over the
prompts it is meant for (induction on repeated random tokens, duplicate-token on duplicated
tokens, the rest on natural text) with a 95% bootstrap interval over those prompts. Roles and
their ablation checks live in :mod:`attnviz.heads.roles`; results are cached on disk.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from attnviz.heads.corpus import Corpus, CorpusPrompt, PromptKind, corpus_prompts, token_matches
from attnviz.heads.roles import ROLES, Head, RetrievalInputs, RoleCheck, assign_roles, check_roles
from attnviz.heads.stats import bootstrap
from attnviz.heads.summary import STAT_NAMES, StatSums
from attnviz.hooks import AttentionCall, Hooks
from attnviz.models.loading import LoadedModel
from attnviz.models.registry import cache_root
from attnviz.tracing.forward import chunk_bytes_for, forward

ATLAS_VERSION = 1
DEFAULT_PROMPTS = 200
STATISTICS = {
    "entropy": "Entropy of each query's attention in bits, averaged over queries (natural text).",
    "distance": "Attention-weighted mean distance |query − key| in tokens (natural text).",
    "first_token": "Mean attention on the first token, the 'attention sink' (natural text).",
    "previous_token": "Mean attention from each token to the one just before it (natural text).",
    "breadth": "Entropy as a share of its maximum, log2 of the keys a query may see (natural text; 1 = uniform).",
    "induction": "Attention to the token after an earlier occurrence of the query's token (repeated random tokens).",
    "duplicate": "Attention to earlier occurrences of the query's own token (random tokens with duplicates).",
}
# The prompts each statistic is averaged over.
MEASURED_ON: dict[str, PromptKind] = {
    name: "natural" for name in ("entropy", "distance", "first_token", "previous_token", "breadth")
} | {"induction": "repeated", "duplicate": "duplicate"}
_EXTRA = ("breadth", "induction", "duplicate")
STATISTICS_PASS_TOKENS = 1024  # tokens of one statistics pass (prompts of one length share it)
Progress = Callable[[float, str], None]  # (fraction done, what runs now)


class AtlasCancelled(Exception):
    """The atlas was stopped before it finished (its ``cancel`` event was set)."""


@dataclass(frozen=True)
class Atlas:
    """Statistics, roles and ablation checks of every head of a model's main stack over a corpus.

    ``values`` [prompts, layers, heads, S] holds each prompt's statistics (S = ``statistics``), NaN
    where a statistic is not measured on that prompt's kind; ``mean``/``low``/``high``
    [layers, heads, S] are the mean over the prompts it is measured on and its 95% bootstrap
    interval. ``roles`` maps each role to its heads, strongest first; ``checks`` to its ablation check.
    """

    model_name: str
    fingerprint: str
    corpus_name: str
    corpus_digest: str
    prompts: tuple[CorpusPrompt, ...]
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    statistics: tuple[str, ...]
    values: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    roles: dict[str, tuple[Head, ...]]
    checks: dict[str, RoleCheck | None]

    @property
    def n_tokens(self) -> int:
        return sum(len(p.ids) for p in self.prompts)

    def head_roles(self, layer: int, head: int) -> list[str]:
        """The roles one head holds, in the order of :data:`attnviz.heads.roles.ROLES`."""
        return [role.name for role in ROLES if (layer, head) in self.roles.get(role.name, ())]

    def export(self) -> dict[str, object]:
        """The JSON document ``python -m attnviz atlas`` writes (see the README for its fields)."""

        def per_stat(array: np.ndarray, li: int, hi: int) -> dict[str, float]:
            return {name: round(float(array[li, hi, si]), 6) for si, name in enumerate(self.statistics)}

        heads = [
            {"layer": layer, "head": head, "roles": self.head_roles(layer, head),
             "mean": per_stat(self.mean, li, hi), "low": per_stat(self.low, li, hi), "high": per_stat(self.high, li, hi)}
            for li, layer in enumerate(self.layers)
            for hi, head in enumerate(self.heads)
        ]  # fmt: skip
        roles = {}
        for role in ROLES:
            check = self.checks.get(role.name)
            roles[role.name] = (check.export() if check is not None else RoleCheck.empty()) | {
                "heads": [list(h) for h in self.roles.get(role.name, ())]
            }
        return {
            "model": self.model_name,
            "fingerprint": self.fingerprint,
            "corpus": {"name": self.corpus_name, "prompts": len(self.prompts), "tokens": self.n_tokens},
            "statistics": list(self.statistics),
            "heads": heads,
            "roles": roles,
        }


class _BatchSums:
    """The statistics of a batch of prompts of one length, reduced from their attention calls chunk by chunk.

    Prompt b's heads are rows ``b·heads .. (b + 1)·heads`` of the running sums (see :class:`Atlas`).
    """

    def __init__(self, prompts: Sequence[CorpusPrompt], device: torch.device) -> None:
        matches = [np.stack(token_matches(p.ids)[::-1]) for p in prompts]  # (induction, duplicate) [2, n, n]
        self.matches = torch.as_tensor(np.stack(matches), dtype=torch.float32, device=device)  # [B, 2, n, n]
        self.matched_rows = self.matches.amax(-1).sum(-1).clamp_min(1.0)  # [B, 2] queries with some match
        self.layers: dict[int, StatSums] = {}
        self.extra: dict[int, torch.Tensor] = {}
        self.breadth_rows: dict[int, int] = {}  # queries that may see two keys or more (entropy can vary)
        self.done: dict[int, np.ndarray] = {}

    def add(self, call: AttentionCall) -> None:
        layer, start = call.site.layer, call.query_start
        batch, heads, rows, width = call.weights.shape
        p, scores = call.weights.float(), call.scores.float()  # [batch, heads, rows, width]
        if layer not in self.layers:
            self.layers[layer] = StatSums(batch * heads, call.n_queries, call.n_keys, p.device)
            self.extra[layer] = torch.zeros((batch, heads, 3), dtype=torch.float32, device=p.device)
            self.breadth_rows[layer] = 0
        entropy = self.layers[layer].add(p.flatten(0, 1), scores.flatten(0, 1), start).view(batch, heads, rows)
        visible = _visible_keys(call, rows)
        usable = visible > 1
        self.extra[layer][..., 0] += (entropy[..., usable] / torch.log2(visible[usable].float())).sum(-1)
        self.breadth_rows[layer] += int(usable.sum())
        matches = self.matches[:, :, start : start + rows, :width]
        # Σ_qk p·match per head and kind, as one batched matrix product (einsum took 10x as long here).
        self.extra[layer][..., 1:] += torch.matmul(p.flatten(2), matches.flatten(2).transpose(1, 2))
        if start + rows == call.n_queries:
            self.done[layer] = self._finish(layer, batch)

    def _finish(self, layer: int, batch: int) -> np.ndarray:
        """[batch, heads, S] statistics of a finished layer in the order of :data:`STATISTICS`."""
        base = self.layers.pop(layer).finish().reshape(batch, -1, len(STAT_NAMES))
        breadth_rows = max(self.breadth_rows.pop(layer), 1)
        counts = np.concatenate([np.full((batch, 1), breadth_rows), self.matched_rows.double().cpu().numpy()], 1)
        extra = self.extra.pop(layer).double().cpu().numpy() / counts[:, None, :]
        columns = dict(zip(STAT_NAMES, np.moveaxis(base, -1, 0), strict=True))
        columns |= dict(zip(_EXTRA, np.moveaxis(extra, -1, 0), strict=True))
        return np.stack([columns[name] for name in STATISTICS], axis=-1)


def _visible_keys(call: AttentionCall, rows: int) -> torch.Tensor:
    """[rows] how many keys each query of the chunk may see, from the mask that was applied (one for the batch)."""
    if call.mask is None:
        return torch.full((rows,), call.n_keys, device=call.weights.device)
    allowed = (call.mask[0, 0] > torch.finfo(call.mask.dtype).min).sum(-1)
    return allowed.expand(rows)


def batch_statistics(loaded: LoadedModel, prompts: Sequence[CorpusPrompt]) -> np.ndarray:
    """[prompts, layers, heads, S] statistics (S = :data:`STATISTICS`) of prompts of one length, in one pass."""
    ids = torch.tensor([p.ids for p in prompts])
    inputs: dict[str, object] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if loaded.kind == "encoder-decoder":
        start = loaded.model.config.decoder_start_token_id
        inputs["decoder_input_ids"] = torch.full((len(prompts), 1), 0 if start is None else int(start))
    sums = _BatchSums(prompts, loaded.device)
    stack = loaded.main_stack

    def reduce(call: AttentionCall) -> None:
        if call.site.stack == stack:
            sums.add(call)

    forward(
        loaded,
        inputs,
        Hooks(record=reduce, chunk_bytes=chunk_bytes_for(loaded, inputs)),
        last_logits_only=True,
    )
    return np.stack([sums.done[layer] for layer in sorted(sums.done)], axis=1)


def statistics_passes(prompts: Sequence[CorpusPrompt]) -> list[list[int]]:
    """Indices of ``prompts`` per statistics pass: prompts of one length, at most STATISTICS_PASS_TOKENS tokens a pass."""
    lengths: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        lengths.setdefault(len(prompt.ids), []).append(index)
    return [
        members[i : i + step]
        for n_tokens, members in lengths.items()
        for step in [max(1, STATISTICS_PASS_TOKENS // n_tokens)]
        for i in range(0, len(members), step)
    ]


def build_atlas(
    loaded: LoadedModel,
    corpus: Corpus,
    *,
    prompts: int = DEFAULT_PROMPTS,
    retrieval: RetrievalInputs | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> Atlas:
    """Statistics of every head over ``prompts`` natural passages of ``corpus`` and generated sequences,
    the roles they give and an ablation check of each role (``retrieval``: calibrated heads and cases).

    Prompts of one length share a statistics pass (:func:`statistics_passes`), and the ablation checks
    batch their runs too. ``progress(done, what)`` is told after every forward pass; setting ``cancel``
    stops at the next one.
    """
    chosen = corpus_prompts(loaded, corpus, prompts)
    passes = statistics_passes(chosen)
    found: dict[int, np.ndarray] = {}
    for number, members in enumerate(passes, start=1):
        if cancel is not None and cancel.is_set():
            raise AtlasCancelled("The atlas was cancelled.")
        found.update(zip(members, batch_statistics(loaded, [chosen[i] for i in members]), strict=True))
        done = len(found)
        if progress is not None:
            kinds = sorted({chosen[i].kind for i in members})
            progress(
                0.6 * done / len(chosen),
                f"Statistics: pass {number} of {len(passes)}, {done} of {len(chosen)} prompts ({', '.join(kinds)})",
            )
    values = np.stack([found[i] for i in range(len(chosen))])
    kinds = np.array([p.kind for p in chosen])
    names = tuple(STATISTICS)
    mean, low, high = (np.full(values.shape[1:], np.nan) for _ in range(3))
    for si, name in enumerate(names):
        values[kinds != MEASURED_ON[name], ..., si] = np.nan
        mean[..., si], low[..., si], high[..., si] = bootstrap(
            values[kinds == MEASURED_ON[name], ..., si], seed=si
        )
    roles = assign_roles(mean, names, retrieval.heads if retrieval is not None else ())

    def told(done: float, what: str) -> None:
        if cancel is not None and cancel.is_set():
            raise AtlasCancelled("The atlas was cancelled.")
        if progress is not None:
            progress(0.6 + 0.4 * done, what)

    checks = check_roles(loaded, roles, chosen, retrieval, told)
    return Atlas(
        model_name=loaded.info.name, fingerprint=loaded.fingerprint, corpus_name=corpus.name,
        corpus_digest=corpus.digest, prompts=chosen, layers=tuple(range(values.shape[1])),
        heads=tuple(range(values.shape[2])), statistics=names, values=values, mean=mean, low=low, high=high,
        roles=roles, checks=checks,
    )  # fmt: skip


def atlas_path(loaded: LoadedModel, corpus: Corpus, prompts: int, retrieval: RetrievalInputs | None) -> Path:
    """Cache file keyed on the model's fingerprint, the corpus's hash, the prompt count and the retrieval heads."""
    recipe = json.dumps(
        [ATLAS_VERSION, loaded.fingerprint, corpus.digest, prompts, retrieval.digest if retrieval else None]
    )
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", loaded.info.name).strip("_")[-60:] or "model"
    return cache_root() / "atlas" / f"{safe}-{digest}.npz"


def save_atlas(result: Atlas, path: Path) -> None:
    """Write an atlas atomically (a temporary file renamed into place): a reader never sees half a file."""
    meta = {
        "model_name": result.model_name, "fingerprint": result.fingerprint, "corpus_name": result.corpus_name,
        "corpus_digest": result.corpus_digest, "prompts": [asdict(p) for p in result.prompts],
        "layers": result.layers, "heads": result.heads, "statistics": result.statistics,
        "roles": {name: [list(h) for h in heads] for name, heads in result.roles.items()},
        "checks": {name: None if c is None else asdict(c) for name, c in result.checks.items()},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".partial.npz")
    np.savez(staging, meta=np.array(json.dumps(meta)), values=result.values, mean=result.mean, low=result.low,
             high=result.high)  # fmt: skip
    staging.replace(path)


def load_atlas(path: Path) -> Atlas:
    """An atlas written by :func:`save_atlas`."""
    with np.load(path, allow_pickle=False) as stored:
        meta = json.loads(str(stored["meta"]))
        arrays = {name: stored[name] for name in ("values", "mean", "low", "high")}
    return Atlas(
        model_name=meta["model_name"], fingerprint=meta["fingerprint"], corpus_name=meta["corpus_name"],
        corpus_digest=meta["corpus_digest"],
        prompts=tuple(CorpusPrompt(**{**p, "ids": tuple(p["ids"])}) for p in meta["prompts"]),
        layers=tuple(meta["layers"]), heads=tuple(meta["heads"]), statistics=tuple(meta["statistics"]),
        roles={name: tuple((int(a), int(b)) for a, b in heads) for name, heads in meta["roles"].items()},
        checks={name: None if c is None else RoleCheck.from_dict(c) for name, c in meta["checks"].items()},
        **arrays,
    )  # fmt: skip


def is_cached(loaded: LoadedModel, corpus: Corpus, prompts: int, retrieval: RetrievalInputs | None) -> bool:
    """Whether :func:`atlas` would read this atlas from disk."""
    return atlas_path(loaded, corpus, prompts, retrieval).exists()


def atlas(
    loaded: LoadedModel,
    corpus: Corpus,
    *,
    prompts: int = DEFAULT_PROMPTS,
    retrieval: RetrievalInputs | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    refresh: bool = False,
) -> Atlas:
    """The atlas from the disk cache, or built (again, if ``refresh``) and saved."""
    path = atlas_path(loaded, corpus, prompts, retrieval)
    if path.exists() and not refresh:
        return load_atlas(path)
    result = build_atlas(
        loaded, corpus, prompts=prompts, retrieval=retrieval, progress=progress, cancel=cancel
    )
    save_atlas(result, path)
    return result
