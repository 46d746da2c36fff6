"""Attention masks: build them, read the ones a model really used, apply them and compare.

A mask here is a boolean [n, n] *allowed* matrix: ``allowed[q, k]`` is True when query
``q`` may attend to key ``k``. Builders cover the textbook patterns (causal,
bidirectional, sliding window, Child et al. 2019 strided, prefix-LM, block-diagonal)
plus a custom mask from a small rule language parsed without ``eval``. Masks are
applied through our attention function (``Hooks(mask=...)``), never by editing
model code, and :func:`compare_mask` reports what that does to the model's output.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoConfig
from transformers.masking_utils import create_sliding_window_causal_mask

from attnviz.hooks import AttentionCall, Hooks, Stack
from attnviz.loading import LoadedModel
from attnviz.tokens import display_tokens
from attnviz.prediction import Prediction, top_next_tokens
from attnviz.trace import Messages, PromptError, batch_inputs, encode, forward, record

MAX_MASK_TOKENS = 128
MAX_RULE_CHARS = 200
MAX_RULE_NODES = 80


class MaskRuleError(ValueError):
    """A custom mask rule could not be parsed or evaluated; the message says why."""


# --- builders ---------------------------------------------------------------------------------


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Query and key index grids, [n, 1] and [1, n], for vectorised mask rules."""
    index = np.arange(n)
    return index[:, None], index[None, :]


def causal(n: int) -> np.ndarray:
    """Lower-triangular [n, n]: each token sees itself and the past (decoders)."""
    q, k = _grid(n)
    return k <= q


def bidirectional(n: int) -> np.ndarray:
    """All-True [n, n]: every token sees every token (encoders)."""
    return np.ones((n, n), dtype=bool)


def sliding_window(n: int, window: int) -> np.ndarray:
    """Causal band [n, n] of ``window`` keys per query, itself included (Mistral/Gemma 2 semantics)."""
    q, k = _grid(n)
    return (k <= q) & (k > q - window)


def strided(n: int, stride: int) -> np.ndarray:
    """Child et al. 2019 strided pattern [n, n]: the last ``stride`` keys plus every ``stride``-th key before.

    With ``stride`` ≈ √n each query keeps O(√n) keys, so the mask holds O(n√n) entries.
    """
    q, k = _grid(n)
    distance = q - k
    return (distance >= 0) & ((distance <= stride) | (distance % stride == 0))


def prefix_lm(n: int, prefix: int) -> np.ndarray:
    """Prefix-LM [n, n]: bidirectional among the first ``prefix`` tokens, causal after."""
    q, k = _grid(n)
    return (k <= q) | ((q < prefix) & (k < prefix))


def block_diagonal(segments: np.ndarray, within: Callable[[int], np.ndarray] = causal) -> np.ndarray:
    """[n, n] mask letting tokens attend only inside their own segment (``segments`` [n] ids).

    ``within`` gives the pattern inside the sequence (``causal`` by default, or ``bidirectional``).
    """
    segments = np.asarray(segments)
    return within(len(segments)) & (segments[:, None] == segments[None, :])


def segments_after(tokens: Sequence[str], separator: str) -> np.ndarray:
    """Segment id [n] of each token: a new segment starts after every token containing ``separator``."""
    ends = np.array([separator in token for token in tokens], dtype=int)
    return np.concatenate([[0], np.cumsum(ends)[:-1]]).astype(int) if len(tokens) else np.zeros(0, dtype=int)


# --- custom rules: a tiny expression language, interpreted over an AST whitelist ---------------

_BINARY: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.FloorDiv: np.floor_divide, ast.Mod: np.mod,
}  # fmt: skip
_COMPARE: dict[type, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
    ast.Eq: np.equal, ast.NotEq: np.not_equal,
}  # fmt: skip
_FUNCTIONS: dict[str, tuple[int, Callable[..., np.ndarray]]] = {
    "abs": (1, np.abs), "min": (2, np.minimum), "max": (2, np.maximum),
}  # fmt: skip
RULE_HELP = (
    "Variables q (query position), k (key position), n (length); integers; + - * // %; "
    "< <= > >= == !=; and, or, not; abs(x), min(a, b), max(a, b). Example: k <= q and q - k < 3"
)


def _is_bool(value: np.ndarray) -> bool:
    return np.asarray(value).dtype == bool


def _evaluate(node: ast.AST, names: dict[str, np.ndarray]) -> np.ndarray:
    """Evaluate one whitelisted node; anything else is refused with a readable message."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, names)
    if isinstance(node, ast.Constant) and type(node.value) in (int, bool):
        return np.asarray(node.value)
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise MaskRuleError(f"Unknown name '{node.id}': use q, k or n.")
        return names[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return np.logical_not(_as_bool(_evaluate(node.operand, names)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _as_int(_evaluate(node.operand, names))
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _as_int(_evaluate(node.left, names)), _as_int(_evaluate(node.right, names))
        if isinstance(node.op, (ast.FloorDiv, ast.Mod)) and np.any(right == 0):
            raise MaskRuleError("Division or modulo by zero in the rule.")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.BoolOp):
        values = [_as_bool(_evaluate(value, names)) for value in node.values]
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = values[0]
        for value in values[1:]:
            result = combine(result, value)
        return result
    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
        left = _as_int(_evaluate(node.left, names))
        result = np.asarray(True)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _as_int(_evaluate(comparator, names))
            result = result & _COMPARE[type(op)](left, right)
            left = right
        return result
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        arity, function = _FUNCTIONS[node.func.id]
        if node.keywords or len(node.args) != arity:
            raise MaskRuleError(f"{node.func.id}() takes {arity} argument(s).")
        return function(*(_as_int(_evaluate(arg, names)) for arg in node.args))
    raise MaskRuleError(f"Not allowed in a mask rule: '{ast.unparse(node)}'. {RULE_HELP}")


def _as_int(value: np.ndarray) -> np.ndarray:
    if _is_bool(value):
        raise MaskRuleError("A comparison was used where a number is expected (e.g. '(q > k) + 1').")
    return value


def _as_bool(value: np.ndarray) -> np.ndarray:
    if not _is_bool(value):
        raise MaskRuleError("and / or / not need comparisons on both sides (e.g. 'k <= q and q - k < 3').")
    return value


def from_rule(n: int, rule: str) -> np.ndarray:
    """[n, n] mask where ``rule`` (see RULE_HELP) is true; user text is parsed, never executed."""
    text = rule.strip()
    if not text:
        raise MaskRuleError("The rule is empty. " + RULE_HELP)
    if len(text) > MAX_RULE_CHARS:
        raise MaskRuleError(f"The rule is longer than {MAX_RULE_CHARS} characters.")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise MaskRuleError(f"The rule is not a valid expression ({error.msg}). {RULE_HELP}") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_RULE_NODES:
        raise MaskRuleError(f"The rule has more than {MAX_RULE_NODES} parts; keep it short.")
    q, k = _grid(n)
    result = _evaluate(tree, {"q": q, "k": k, "n": np.asarray(n)})
    if not _is_bool(result):
        raise MaskRuleError("The rule must be a condition (a comparison), e.g. 'k <= q'.")
    return np.broadcast_to(result, (n, n)).copy()


def pattern_name(allowed: np.ndarray) -> str:
    """Name the textbook pattern a [queries, keys] mask equals, e.g. 'causal' or 'sliding window of 4'."""
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.all():
        return "bidirectional (everything allowed)"
    rows, cols = allowed.shape
    if rows != cols:
        return "custom"
    if np.array_equal(allowed, causal(rows)):
        return "causal"
    window = int(allowed.sum(axis=1).max())
    if np.array_equal(allowed, sliding_window(rows, window)):
        return f"sliding window of {window}"
    return "custom"


# --- transformers' own masks ------------------------------------------------------------------


def transformers_sliding_window(n: int, window: int, family: str = "mistral") -> np.ndarray:
    """[n, n] allowed matrix that transformers' own mask code builds for a ``family`` config with this window.

    Only a configuration is made (no weights): the same ``create_sliding_window_causal_mask``
    call Mistral and Gemma 2 layers use, with eager attention (0 allowed, dtype-min blocked).
    """
    config = AutoConfig.for_model(family, sliding_window=window)
    config._attn_implementation = "eager"
    mask = create_sliding_window_causal_mask(
        config=config,
        inputs_embeds=torch.zeros(1, n, 1),
        attention_mask=torch.ones(1, n, dtype=torch.long),
        cache=None,
    )
    return _allowed(mask)[0]


def _allowed(additive: torch.Tensor) -> np.ndarray:
    """Boolean [batch, queries, keys] from an additive [batch, 1, queries, keys] mask (0 kept, dtype-min blocked)."""
    blocked = torch.finfo(additive.dtype).min / 2
    return (additive[:, 0] > blocked).cpu().numpy()


# --- counting ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskStats:
    """Cost side of a mask: scores computed (kept entries) against the full n² of dense attention."""

    n: int
    kept: int
    future: int

    @property
    def full(self) -> int:
        return self.n * self.n

    @property
    def density(self) -> float:
        return self.kept / self.full if self.full else 0.0


def mask_stats(allowed: np.ndarray) -> MaskStats:
    """Kept entries of an [n, n] mask and how many of them look at a later token (k > q)."""
    allowed = np.asarray(allowed, dtype=bool)
    n = allowed.shape[0]
    return MaskStats(n=n, kept=int(allowed.sum()), future=int(np.triu(allowed, 1).sum()))


# --- masks the model really used --------------------------------------------------------------


@dataclass(frozen=True)
class MaskGroup:
    """Layers of one stack that applied the same mask: ``allowed`` is bool [batch, queries, keys]."""

    stack: Stack
    layers: tuple[int, ...]
    allowed: np.ndarray


@dataclass(frozen=True)
class ModelMasks:
    """The masks of one (possibly padded) forward pass, grouped by identical layers.

    ``tokens`` holds each batch row's input tokens including padding ([batch][width]);
    ``padding`` marks pad positions [batch, width]; ``target_tokens`` are the decoder
    tokens of encoder-decoders (queries of the decoder and cross stacks).
    """

    tokens: tuple[tuple[str, ...], ...]
    padding: np.ndarray
    target_tokens: tuple[str, ...]
    groups: tuple[MaskGroup, ...]

    def axes(self, stack: Stack, row: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(query tokens, key tokens) of ``stack`` for batch row ``row``."""
        if stack == "decoder" and self.target_tokens:
            return self.target_tokens, self.target_tokens
        if stack == "cross":
            return self.target_tokens, self.tokens[row]
        return self.tokens[row], self.tokens[row]


def read_masks(
    loaded: LoadedModel, prompts: Sequence[str | Messages], target: str | None = None
) -> ModelMasks:
    """Run the prompts as one padded batch and return the masks every attention call applied."""
    batch = batch_inputs(loaded, prompts, target=target)
    seen: dict[tuple[Stack, int], np.ndarray] = {}

    def keep(call: AttentionCall) -> None:
        rows, _, queries, keys = call.weights.shape
        if call.mask is None:
            seen[(call.site.stack, call.site.layer)] = np.ones((rows, queries, keys), dtype=bool)
        else:
            seen[(call.site.stack, call.site.layer)] = _allowed(call.mask.expand(rows, 1, queries, keys))

    forward(loaded, batch.inputs, Hooks(record=keep))
    groups: list[MaskGroup] = []
    for (stack, layer), allowed in sorted(seen.items(), key=lambda item: (item[0][0], item[0][1])):
        same = next((g for g in groups if g.stack == stack and np.array_equal(g.allowed, allowed)), None)
        if same is None:
            groups.append(MaskGroup(stack, (layer,), allowed))
        else:
            groups[groups.index(same)] = MaskGroup(stack, (*same.layers, layer), same.allowed)
    with loaded.lock:
        tokens = tuple(display_tokens(loaded.tokenizer, row.tolist())[0] for row in batch.inputs["input_ids"])
        target_tokens = display_tokens(loaded.tokenizer, batch.target_ids)[0] if batch.target_ids else ()
    return ModelMasks(
        tokens=tokens,
        padding=(batch.inputs["attention_mask"] == 0).numpy(),
        target_tokens=target_tokens,
        groups=tuple(groups),
    )


# --- applying a mask and comparing --------------------------------------------------------------


def prompt_tokens(
    loaded: LoadedModel, text: str, max_tokens: int = MAX_MASK_TOKENS
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Token ids and readable tokens of the prompt a mask is built over (two full runs stay small)."""
    ids = encode(loaded, text)
    if len(ids) > max_tokens:
        raise PromptError(f"The prompt has {len(ids)} tokens; masks can be applied to at most {max_tokens}.")
    with loaded.lock:
        tokens = display_tokens(loaded.tokenizer, ids)[0]
    return tuple(ids), tokens


@dataclass(frozen=True)
class MaskedRun:
    """One forward pass of a prompt under a mask.

    ``attention`` [layers, heads, n, n] of the main self-attention stack; ``prediction``
    and ``loss`` (mean next-token cross-entropy over the prompt) exist only for models
    with a language-model head.
    """

    attention: np.ndarray
    prediction: Prediction | None
    loss: float | None


@dataclass(frozen=True)
class MaskComparison:
    """The model's own run next to the run under ``allowed`` ([n, n]) for the prompt ``tokens``.

    ``output_change`` is the largest absolute change of the final output (logits of an
    LM head, else the last hidden states); the outputs themselves are not kept, since
    [n, vocab] logits would dominate the cache.
    """

    tokens: tuple[str, ...]
    allowed: np.ndarray
    original: MaskedRun
    masked: MaskedRun
    output_change: float

    @property
    def future_attention(self) -> float:
        """Share of the masked run's attention (mean over layers, heads, queries) on later tokens (k > q)."""
        later = np.triu(np.ones(self.allowed.shape, dtype=bool), 1)
        total = self.masked.attention[..., later].sum(axis=-1).mean()  # summed over queries
        return float(total / len(self.tokens))


def _run(
    loaded: LoadedModel, ids: torch.Tensor, allowed: np.ndarray | None, top_k: int
) -> tuple[MaskedRun, torch.Tensor]:
    """One recorded forward pass under ``allowed`` (None: the model's own mask), plus its final output [n, ...]."""
    mask = None if allowed is None else torch.from_numpy(np.ascontiguousarray(allowed))
    outputs, recording = record(loaded, {"input_ids": ids}, mask=mask)
    main: Stack = "decoder" if loaded.kind == "decoder" else "encoder"
    attention = recording.weights[main][0]
    logits = getattr(outputs, "logits", None)
    if logits is None:
        return MaskedRun(attention, None, None), outputs.last_hidden_state[0].float()
    logits = logits[0].float()
    loss = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:]).item() if ids.shape[1] > 1 else None
    return MaskedRun(attention, top_next_tokens(loaded, logits[-1], top_k), loss), logits


def compare_mask(
    loaded: LoadedModel, input_ids: Sequence[int], allowed: np.ndarray, top_k: int = 5
) -> MaskComparison:
    """Run a prompt with the model's own mask and with ``allowed`` [n, n]; return both runs.

    Only self-attention of decoder-only and encoder-only models is masked; the
    replacement goes through our attention function for every layer and head.
    """
    if loaded.kind == "encoder-decoder":
        raise ValueError("Applying a mask is supported for decoder-only and encoder-only models.")
    n = len(input_ids)
    allowed = np.asarray(allowed, dtype=bool)
    if allowed.shape != (n, n):
        raise ValueError(f"The mask is {allowed.shape}, but the prompt has {n} tokens.")
    if not allowed.any(axis=1).all():
        raise ValueError("Every query needs at least one allowed key (a row of the mask is empty).")
    ids = torch.tensor([list(input_ids)], dtype=torch.long)
    with loaded.lock:
        tokens = display_tokens(loaded.tokenizer, list(input_ids))[0]
    original, original_output = _run(loaded, ids, None, top_k)
    masked, masked_output = _run(loaded, ids, allowed, top_k)
    change = float((masked_output - original_output).abs().max())
    return MaskComparison(
        tokens=tokens, allowed=allowed, original=original, masked=masked, output_change=change
    )
