"""Attention step by step: every intermediate matrix of one attention layer, on a toy or a real model.

:func:`toy` builds a seeded, readable example (d_model 6, two heads, numbers with one decimal);
:func:`first_layer` recomputes the loaded decoder's first attention layer by hand from its own
modules (input norm, q/k/v projections, rotary embedding, key/value head sharing, o_proj), and
:func:`verify` checks those weights against the ones traced from the model itself.
:func:`steps` turns a :class:`Walkthrough` into the labelled matrices the Learn page shows.
"""

from __future__ import annotations

import math
import sys
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from attnviz.hooks import AttentionCall, Hooks
from attnviz.learn import variants
from attnviz.masks import builders as masks
from attnviz.models import devices
from attnviz.models.loading import LoadedModel
from attnviz.tracing.forward import forward
from attnviz.tracing.inputs import PromptError, encode, prompt_inputs
from attnviz.tracing.tokens import display_tokens

MASK_CHOICES = ("none", "causal", "sliding window", "strided", "padding")
MAX_TOY_WORDS = 8
MAX_MODEL_TOKENS = 16
TOY_D_MODEL = 6
TOY_HEADS = 2
PAD_TOKENS = 2
PAD_LABEL = "[pad]"
SLIDING_WINDOW = 3
# Llama-style first layers we recompute by hand; others are refused rather than shown wrong.
SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2")


class WalkthroughError(ValueError):
    """The sentence or model cannot be walked through; the message says why and what to do."""


@dataclass(frozen=True)
class Walkthrough:
    """One attention layer computed step by step over ``tokens`` (n of them, padding included).

    ``embeddings`` [n, d_model] are the token vectors, ``x`` [n, d_model] the layer's input
    (toy: embeddings + sinusoidal positions; model: after its input norm). ``q_raw`` [H, n, d_h]
    is Q before rotary embedding, ``q`` [H, n, d_h] after; ``k``/``v`` [KV, n, d_h] per key/value
    head. ``scores`` and ``weights`` are [H, n, n]; ``head_outputs`` [H, n, d_h]; ``concat``
    [n, H·d_h]; ``output`` [n, d_model]. ``w_q``..``w_o`` are the toy's matrices (None for models).
    """

    source: str
    tokens: tuple[str, ...]
    padding: int
    mask_choice: str
    mask: np.ndarray
    scale: float
    temperature: float
    n_heads: int
    n_kv_heads: int
    embeddings: np.ndarray
    x: np.ndarray
    q_raw: np.ndarray
    k_raw: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    scores: np.ndarray
    weights: np.ndarray
    head_outputs: np.ndarray
    concat: np.ndarray
    output: np.ndarray
    w_q: np.ndarray | None = None
    w_k: np.ndarray | None = None
    w_v: np.ndarray | None = None
    w_o: np.ndarray | None = None

    @property
    def rotary(self) -> bool:
        return self.w_q is None

    @property
    def head_dim(self) -> int:
        return self.q.shape[-1]

    @property
    def scaled(self) -> np.ndarray:
        """Scores times scale / temperature, [H, n, n]."""
        return self.scores * (self.scale / self.temperature)

    @property
    def masked(self) -> np.ndarray:
        """Scaled scores with blocked entries set to -inf, [H, n, n]."""
        return np.where(self.mask[None], self.scaled, -np.inf)

    def kv_head(self, head: int) -> int:
        return variants.kv_head_of(head, self.n_heads, self.n_kv_heads)


def mask_for(choice: str, n_real: int) -> tuple[np.ndarray, int]:
    """The [n, n] allowed matrix of a mask choice and how many padding tokens it appends."""
    if choice == "padding":
        allowed = masks.causal(n_real + PAD_TOKENS)
        allowed[:, n_real:] = False  # nobody may read a padding token
        return allowed, PAD_TOKENS
    builders = {
        "none": masks.bidirectional,
        "causal": masks.causal,
        "sliding window": lambda n: masks.sliding_window(n, SLIDING_WINDOW),
        "strided": lambda n: masks.strided(n, max(1, math.isqrt(n))),
    }
    if choice not in builders:
        raise WalkthroughError(f"Unknown mask '{choice}'; choose one of: {', '.join(MASK_CHOICES)}.")
    return builders[choice](n_real), 0


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: np.ndarray, scale: float, temperature: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scores [H, n, n], weights [H, n, n] and head outputs [H, n, d_h], K/V shared by groups of query heads."""
    if temperature <= 0:
        raise WalkthroughError("The temperature must be positive.")
    groups = q.shape[0] // k.shape[0]
    k_shared, v_shared = k.repeat_interleave(groups, dim=0), v.repeat_interleave(groups, dim=0)
    scores = q @ k_shared.transpose(-1, -2)
    weights = variants.masked_softmax(scores * (scale / temperature), mask)
    return scores, weights, weights @ v_shared


def _words(sentence: str) -> tuple[str, ...]:
    words = tuple(sentence.split())
    if not words:
        raise WalkthroughError("The sentence is empty: type a few words.")
    if len(words) > MAX_TOY_WORDS:
        raise WalkthroughError(
            f"The toy takes at most {MAX_TOY_WORDS} words and this sentence has {len(words)}: shorten it."
        )
    return words


def _toy_vector(word: str) -> np.ndarray:
    """A word's toy embedding: seeded by the word itself, so the same word always gets the same numbers."""
    rng = np.random.default_rng(zlib.crc32(word.lower().encode()))
    return np.round(rng.uniform(-1, 1, TOY_D_MODEL), 1)


def _toy_matrices() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """W_Q, W_K, W_V, W_O [6, 6], seeded, one decimal."""
    rng = np.random.default_rng(2017)
    return tuple(np.round(rng.uniform(-1, 1, (TOY_D_MODEL, TOY_D_MODEL)), 1) for _ in range(4))  # type: ignore[return-value]


def toy(
    sentence: str, mask_choice: str = "causal", scaled: bool = True, temperature: float = 1.0
) -> Walkthrough:
    """The seeded toy: one word per token, d_model 6, two heads of 3, sinusoidal positions."""
    words = _words(sentence)
    allowed, padding = mask_for(mask_choice, len(words))
    tokens = words + (PAD_LABEL,) * padding
    embeddings = np.stack([_toy_vector(w) for w in words] + [np.zeros(TOY_D_MODEL)] * padding)
    positions = np.round(variants.sinusoidal_positions(len(tokens), TOY_D_MODEL).numpy(), 1)
    x = np.round(embeddings + positions, 1)
    w_q, w_k, w_v, w_o = _toy_matrices()
    t = {name: torch.tensor(m, dtype=torch.float64) for name, m in zip("xqkvo", (x, w_q, w_k, w_v, w_o))}
    q = variants.split_heads(t["x"] @ t["q"], TOY_HEADS)
    k = variants.split_heads(t["x"] @ t["k"], TOY_HEADS)
    v = variants.split_heads(t["x"] @ t["v"], TOY_HEADS)
    scale = 1 / math.sqrt(q.shape[-1]) if scaled else 1.0
    scores, weights, heads = _attend(q, k, v, allowed, scale, temperature)
    concat = heads.transpose(0, 1).reshape(len(tokens), -1)
    return Walkthrough(
        source="toy", tokens=tokens, padding=padding, mask_choice=mask_choice, mask=allowed, scale=scale,
        temperature=temperature, n_heads=TOY_HEADS, n_kv_heads=TOY_HEADS, embeddings=embeddings, x=x,
        q_raw=q.numpy(), k_raw=k.numpy(), q=q.numpy(), k=k.numpy(), v=v.numpy(), scores=scores.numpy(),
        weights=weights.numpy(), head_outputs=heads.numpy(), concat=concat.numpy(),
        output=(concat @ t["o"]).numpy(), w_q=w_q, w_k=w_k, w_v=w_v, w_o=w_o,
    )  # fmt: skip


def _first_layer_modules(loaded: LoadedModel) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The backbone and its first decoder layer, or a WalkthroughError saying why the model is unsupported."""
    name = loaded.info.name
    if loaded.kind != "decoder":
        raise WalkthroughError(
            f"'{name}' is an {loaded.kind} model; the step-by-step view recomputes a decoder's first layer. "
            "Pick a decoder (e.g. SmolLM2) or use the toy."
        )
    backbone = getattr(loaded.model, "model", None)
    family = loaded.info.family
    if family not in SUPPORTED_FAMILIES or backbone is None or not hasattr(backbone, "rotary_emb"):
        raise WalkthroughError(
            f"'{name}' is a {family} model; the step-by-step view recomputes Llama-style layers "
            f"({', '.join(SUPPORTED_FAMILIES)}). Use the toy, or pick SmolLM2."
        )
    return backbone, backbone.layers[0]


def _model_ids(loaded: LoadedModel, sentence: str) -> list[int]:
    try:
        ids = encode(loaded, sentence)
    except PromptError as problem:
        raise WalkthroughError(str(problem)) from problem
    if len(ids) > MAX_MODEL_TOKENS:
        raise WalkthroughError(
            f"The sentence has {len(ids)} tokens; the step-by-step view takes at most {MAX_MODEL_TOKENS}: shorten it."
        )
    return ids


def _padded_ids(loaded: LoadedModel, ids: list[int], padding: int) -> list[int]:
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    return ids + [int(pad)] * padding


def first_layer(
    loaded: LoadedModel,
    sentence: str,
    mask_choice: str = "causal",
    scaled: bool = True,
    temperature: float = 1.0,
) -> Walkthrough:
    """The loaded decoder's first attention layer recomputed by hand from its own modules and weights."""
    backbone, layer = _first_layer_modules(loaded)
    ids = _model_ids(loaded, sentence)
    allowed, padding = mask_for(mask_choice, len(ids))
    ids = _padded_ids(loaded, ids, padding)
    attn = layer.self_attn
    head_dim = attn.head_dim
    rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb  # the family's own RoPE function
    # On as many threads as the model's own pass of these ids (forward.forward), so the check compares like
    # with like: a different thread count can round a matmul differently.
    threads = devices.cpu_threads_for(len(ids), loaded.device)
    with loaded.lock, torch.inference_mode(), threads:
        input_ids = torch.tensor([ids])
        embeddings = backbone.embed_tokens(input_ids).float()
        x = layer.input_layernorm(embeddings)
        cos, sin = backbone.rotary_emb(x, torch.arange(len(ids))[None])
        q_raw = attn.q_proj(x).view(1, len(ids), -1, head_dim).transpose(1, 2)
        k_raw = attn.k_proj(x).view(1, len(ids), -1, head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(1, len(ids), -1, head_dim).transpose(1, 2)[0]
        q, k = rope(q_raw, k_raw, cos, sin)
        scale = float(attn.scaling) if scaled else 1.0
        scores, weights, heads = _attend(q[0], k[0], v, allowed, scale, temperature)
        concat = heads.transpose(0, 1).reshape(len(ids), -1)
        output = attn.o_proj(concat)
    tokens, _ = display_tokens(loaded.tokenizer, ids[: len(ids) - padding])
    return Walkthrough(
        source=loaded.info.name, tokens=tokens + (PAD_LABEL,) * padding, padding=padding,
        mask_choice=mask_choice, mask=allowed, scale=scale, temperature=temperature, n_heads=q.shape[1],
        n_kv_heads=k.shape[1], embeddings=embeddings[0].cpu().numpy(), x=x[0].cpu().numpy(), q_raw=q_raw[0].cpu().numpy(),
        k_raw=k_raw[0].cpu().numpy(), q=q[0].cpu().numpy(), k=k[0].cpu().numpy(), v=v.cpu().numpy(), scores=scores.cpu().numpy(),
        weights=weights.cpu().numpy(), head_outputs=heads.cpu().numpy(), concat=concat.cpu().numpy(), output=output.cpu().numpy(),
    )  # fmt: skip


@dataclass(frozen=True)
class Verification:
    """Recomputed first-layer weights and output against the model's own forward pass (same mask, own scale)."""

    weights_max_abs_diff: float
    output_max_abs_diff: float
    n_heads: int

    @property
    def passed(self) -> bool:
        return self.weights_max_abs_diff < 1e-5 and self.output_max_abs_diff < 1e-4


class _FirstLayerDone(Exception):
    """Raised after the first attention layer ran: later layers cannot change its weights."""


def _traced_first_layer(
    loaded: LoadedModel, ids: list[int], allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The model's own first-layer weights [H, n, n] and attention output [n, d_model] under ``allowed``.

    A normal forward pass with our recording hooks, stopped once layer 0's attention has returned.
    """
    _, layer = _first_layer_modules(loaded)
    calls: list[AttentionCall] = []
    outputs: list[torch.Tensor] = []

    def stop(_module: torch.nn.Module, _inputs: object, output: tuple[torch.Tensor, ...]) -> None:
        outputs.append(output[0])
        raise _FirstLayerDone

    inputs = prompt_inputs(ids)
    hooks = Hooks(record=calls.append, layers=frozenset({0}), mask=torch.as_tensor(allowed))
    with loaded.lock:  # the stop hook sits on a shared module: no other session may run meanwhile
        handle = layer.self_attn.register_forward_hook(stop)
        try:
            forward(loaded, inputs, hooks)
        except _FirstLayerDone:
            pass
        finally:
            handle.remove()
    return calls[0].weights[0].float().cpu().numpy(), outputs[0][0].float().cpu().numpy()


def verify(loaded: LoadedModel, sentence: str, mask_choice: str = "causal") -> Verification:
    """Recompute the first layer at the model's own scale and compare with its traced weights and attention output."""
    mine = first_layer(loaded, sentence, mask_choice)
    ids = _padded_ids(loaded, _model_ids(loaded, sentence), mine.padding)
    weights, output = _traced_first_layer(loaded, ids, mine.mask)
    return Verification(
        weights_max_abs_diff=float(np.abs(weights - mine.weights).max()),
        output_max_abs_diff=float(np.abs(output - mine.output).max()),
        n_heads=mine.n_heads,
    )


# --- the steps shown ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Matrix:
    """One labelled matrix of a step: ``values`` [rows, cols]; ``weights`` marks softmax outputs (0–1 colours)."""

    name: str
    values: np.ndarray
    rows: tuple[str, ...]
    cols: tuple[str, ...]
    weights: bool = False


@dataclass(frozen=True)
class Step:
    """One step of the walkthrough: a stable key, a title, one sentence of explanation and its matrices."""

    key: str
    title: str
    explanation: str
    matrices: tuple[Matrix, ...]


def _dims(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(count))


def scale_step(walk: Walkthrough, head: int, d: int, scaled_note: str) -> Step:
    """The scaling step, which says so when scaling is off instead of praising a ×1 that changes nothing."""
    t = walk.tokens
    if walk.scale == 1.0:
        tempered = walk.temperature != 1
        return Step("scale", "Scaling is off",
                    f"The scores are not multiplied by 1/√d_k (here d_k = {d}): they keep growing with "
                    "√d_k, which pushes softmax towards one winner."
                    + (f" They are only divided by the temperature {walk.temperature:g}." if tempered else ""),
                    (Matrix("scores ÷ temperature" if tempered else "unscaled scores", walk.scaled[head], t, t),))  # fmt: skip
    return Step("scale", "Scale by 1/√d_k",
                f"Scores grow with √d_k (here d_k = {d}), which would push softmax to one winner; "
                f"multiplying {scaled_note} keeps them moderate.",
                (Matrix("scaled scores", walk.scaled[head], t, t),))  # fmt: skip


def steps(walk: Walkthrough, head: int = 0) -> tuple[Step, ...]:
    """The walkthrough as steps for query head ``head`` (key/value head ``walk.kv_head(head)``)."""
    if not 0 <= head < walk.n_heads:
        raise WalkthroughError(f"Head {head} does not exist; this layer has heads 0–{walk.n_heads - 1}.")
    t, g, d = walk.tokens, walk.kv_head(head), walk.head_dim
    hd = _dims("d", d)
    d_model = _dims("d", walk.x.shape[1])
    shared = [h for h in range(walk.n_heads) if walk.kv_head(h) == g]
    sharing = (
        f" Key/value head {g} is shared by query heads {', '.join(map(str, shared))} (grouped-query attention)."
        if len(shared) > 1 else ""
    )  # fmt: skip
    result = [
        Step(
            "inputs", "Inputs X",
            "Each token is a vector of d_model numbers: the toy adds a sinusoidal position to a word vector."
            if not walk.rotary
            else "Each token's embedding, normalised by the layer's input norm: this is what attention reads.",
            (Matrix("X", walk.x, t, d_model),),
        ),
        Step(
            "projections", "Q = X·W_Q, K = X·W_K, V = X·W_V",
            f"Three learned matrices turn every token into a query, a key and a value; head {head} uses "
            f"{d} of the columns.{sharing}",
            (Matrix(f"Q (head {head})", walk.q_raw[head], t, hd), Matrix(f"K (kv head {g})", walk.k_raw[g], t, hd),
             Matrix(f"V (kv head {g})", walk.v[g], t, hd)),
        ),
    ]  # fmt: skip
    if walk.rotary:
        result.append(
            Step(
                "rotary", "Rotary position embedding",
                "RoPE rotates pairs of dimensions of Q and K by an angle proportional to the position, so Q·K "
                "depends on how far apart two tokens are.",
                (Matrix(f"Q rotated (head {head})", walk.q[head], t, hd),
                 Matrix(f"K rotated (kv head {g})", walk.k[g], t, hd)),
            )
        )  # fmt: skip
    scaled_note = f"×{walk.scale:.3g}" + (
        f" ÷ temperature {walk.temperature:g}" if walk.temperature != 1 else ""
    )
    blocked = int((~walk.mask).sum())
    head_outputs = walk.head_outputs[head]
    result += [
        Step("scores", "Scores Q·Kᵀ",
             "Row i, column j is how well query i matches key j: a dot product of two vectors.",
             (Matrix("Q·Kᵀ", walk.scores[head], t, t),)),
        scale_step(walk, head, d, scaled_note),
        Step("mask", f"Mask: {walk.mask_choice}",
             f"{blocked} of {walk.mask.size} entries are blocked (set to −∞, drawn empty), so softmax gives them 0."
             + (f" The last {walk.padding} tokens are padding." if walk.padding else ""),
             (Matrix("masked scores", walk.masked[head], t, t),)),
        Step("softmax", "Softmax, row by row",
             "Each row becomes weights that are positive and sum to 1: how much each query reads from each key.",
             (Matrix("attention weights", walk.weights[head], t, t, weights=True),)),
        Step("weighted", "Weights × V",
             "Each token's head output is the weighted average of the value vectors it attends to.",
             (Matrix(f"head {head} output", head_outputs, t, hd),)),
        Step("concat", "Concatenate heads",
             f"The {walk.n_heads} heads' outputs side by side: {walk.n_heads} × {d} = {walk.concat.shape[1]} numbers "
             "per token.",
             (Matrix("concatenated heads", walk.concat, t, _dims("c", walk.concat.shape[1])),)),
        Step("output", "Output projection W_O",
             "A last learned matrix mixes the heads back into d_model numbers, added to the residual stream.",
             (Matrix("attention output", walk.output, t, d_model),)),
    ]  # fmt: skip
    return tuple(result)
