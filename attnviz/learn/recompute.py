"""A loaded decoder's first attention layer recomputed by hand from its own modules.

Input norm, q/k/v projections, the family's rotary embedding, key/value head sharing and o_proj,
each kept as a matrix for the Learn page.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from attnviz.learn.walkthrough import PAD_LABEL, Walkthrough, WalkthroughError, attend, mask_for
from attnviz.models import devices
from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import PromptError, encode
from attnviz.tracing.tokens import display_tokens

MAX_MODEL_TOKENS = 16
# Llama-style first layers we recompute by hand; others are refused rather than shown wrong.
SUPPORTED_FAMILIES = ("llama", "mistral", "qwen2")


def first_layer_modules(loaded: LoadedModel) -> tuple[torch.nn.Module, torch.nn.Module]:
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


def model_ids(loaded: LoadedModel, sentence: str) -> list[int]:
    try:
        ids = encode(loaded, sentence)
    except PromptError as problem:
        raise WalkthroughError(str(problem)) from problem
    if len(ids) > MAX_MODEL_TOKENS:
        raise WalkthroughError(
            f"The sentence has {len(ids)} tokens; the step-by-step view takes at most {MAX_MODEL_TOKENS}: shorten it."
        )
    return ids


def padded_ids(loaded: LoadedModel, ids: list[int], padding: int) -> list[int]:
    pad = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    return ids + [int(pad)] * padding


def first_layer(
    loaded: LoadedModel,
    sentence: str,
    mask_choice: str = "causal",
    scaled: bool = True,
    temperature: float = 1.0,
) -> Walkthrough:
    """The loaded decoder's first attention layer recomputed by hand from its own modules and weights.

    Every step runs on the model's device and in its dtype (bfloat16 rounds as the model's own pass
    does); the matrices come back as float32 numpy arrays.
    """
    backbone, layer = first_layer_modules(loaded)
    ids = model_ids(loaded, sentence)
    allowed, padding = mask_for(mask_choice, len(ids))
    ids = padded_ids(loaded, ids, padding)
    attn = layer.self_attn
    head_dim = attn.head_dim
    rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb  # the family's own RoPE function
    # On as many threads as the model's own pass of these ids (trace.forward), so the check compares like
    # with like: a different thread count can round a matmul differently.
    threads = devices.cpu_threads_for(len(ids), loaded.device)
    with loaded.lock, torch.inference_mode(), threads:
        input_ids = torch.tensor([ids], device=loaded.device)
        embeddings = backbone.embed_tokens(input_ids)
        x = layer.input_layernorm(embeddings)
        cos, sin = backbone.rotary_emb(x, torch.arange(len(ids), device=x.device)[None])
        q_raw = attn.q_proj(x).view(1, len(ids), -1, head_dim).transpose(1, 2)
        k_raw = attn.k_proj(x).view(1, len(ids), -1, head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(1, len(ids), -1, head_dim).transpose(1, 2)[0]
        q, k = rope(q_raw, k_raw, cos, sin)
        scale = float(attn.scaling) if scaled else 1.0
        scores, weights, heads = attend(q[0], k[0], v, allowed, scale, temperature)
        concat = heads.transpose(0, 1).reshape(len(ids), -1)
        output = attn.o_proj(concat)
    tokens, _ = display_tokens(loaded.tokenizer, ids[: len(ids) - padding])
    return Walkthrough(
        source=loaded.info.name, tokens=tokens + (PAD_LABEL,) * padding, padding=padding,
        mask_choice=mask_choice, mask=allowed, scale=scale, temperature=temperature, n_heads=q.shape[1],
        n_kv_heads=k.shape[1], embeddings=_array(embeddings[0]), x=_array(x[0]), q_raw=_array(q_raw[0]),
        k_raw=_array(k_raw[0]), q=_array(q[0]), k=_array(k[0]), v=_array(v), scores=_array(scores),
        weights=_array(weights), head_outputs=_array(heads), concat=_array(concat), output=_array(output),
    )  # fmt: skip


def _array(tensor: torch.Tensor) -> np.ndarray:
    """A float32 numpy copy (numpy has no bfloat16; float32 holds every bfloat16 value exactly)."""
    return tensor.float().cpu().numpy()
