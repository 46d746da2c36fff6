"""Our attention function: the one hook point for recording and intervening.

transformers 5 routes every attention layer of most architectures through
``AttentionInterface``. We register :func:`attnviz_attention` there under the name
``"attnviz"``; it reproduces the eager maths exactly (GQA key/value repetition,
scaling, softcap, T5 position bias, additive masks carrying causal, padding and
sliding windows, float32 softmax) and applies the :class:`Hooks` active in the
calling context: record weights, zero chosen heads, or replace the mask.
Layers no hook touches take torch's fused SDPA kernel, so recording one layer costs
about one plain forward: our mask function skips the causal mask exactly when SDPA's
own would (``is_causal`` stands in), and the eager maths rebuild it only where needed.

Hooks live in a ``ContextVar``, so concurrent app sessions sharing one model never
see each other's hooks. SDPA and eager agree to well below display precision.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

IMPLEMENTATION = "attnviz"

Stack = Literal["encoder", "decoder", "cross"]

# Module-name fragments that mark a cross-attention layer in the families we support
# (BART/Marian/Whisper "encoder_attn", T5 "EncDecAttention", BERT-decoder "crossattention").
_CROSS_NAMES = ("encoder_attn", "encdecattention", "crossattention", "cross_attn")
# Keyword arguments that change the maths in ways we do not reproduce (attention sinks).
_UNSUPPORTED_KWARGS = ("s_aux", "sinks")


@dataclass(frozen=True)
class Site:
    """Where an attention call happens: which stack and which layer of it."""

    stack: Stack
    layer: int


@dataclass(frozen=True)
class AttentionCall:
    """Everything one attention call computed (or one chunk of its queries), handed to a recorder.

    ``weights`` are post-softmax [batch, heads, rows, keys'] (after any ablation) for the
    queries ``query_start .. query_start + rows`` of ``n_queries``; under ``Hooks.chunk_bytes``
    they may stop short of the ``n_keys`` keys, and every weight beyond ``keys'`` is exactly 0.
    ``value`` is [batch, heads, keys, head_dim] with key/value heads already repeated
    for GQA; ``mask`` is the additive mask that was applied to these rows (None if unmasked);
    ``module`` is the attention layer (for its output projection); ``scores`` are the
    pre-softmax scores behind ``weights`` (mask and bias added, before any ablation), a scratch
    tensor nothing reads after the recorder: it may overwrite them.
    """

    site: Site
    weights: torch.Tensor
    value: torch.Tensor
    mask: torch.Tensor | None
    module: nn.Module
    query_start: int = 0
    n_queries: int | None = None
    n_keys: int | None = None
    scores: torch.Tensor | None = None


Recorder = Callable[[AttentionCall], None]


@dataclass(frozen=True)
class Hooks:
    """What our attention function does during one forward pass.

    ``record`` receives every call of the ``layers`` chosen (all if None; see
    :class:`AttentionCall`); ``ablate`` maps a site to heads whose
    weights are zeroed (their output becomes zero); ``row_ablate`` holds one more such map per
    batch row, applied to that row only (one batch runs several ablations); ``mask`` is a boolean
    [queries, keys] matrix of allowed entries that replaces the model's own mask in
    the self-attention of ``mask_stacks`` (rows are aligned to the last queries).
    ``chunk_bytes`` (recorders that accept chunks only) bounds the float32 scores of one
    chunk of queries: weights are computed, recorded and multiplied with the values chunk by
    chunk, so no [heads, n, n] matrix is ever held (see :class:`AttentionCall`).
    """

    record: Recorder | None = None
    layers: frozenset[int] | None = None
    ablate: dict[Site, tuple[int, ...]] = field(default_factory=dict)
    row_ablate: tuple[dict[Site, tuple[int, ...]], ...] = ()
    mask: torch.Tensor | None = None
    mask_stacks: tuple[Stack, ...] = ("encoder", "decoder")
    chunk_bytes: int | None = None
    # Every layer of a forward pass gets the same mask tensor: each chunk's key width is found once.
    widths: WeakIdKeyDictionary = field(default_factory=WeakIdKeyDictionary, repr=False, compare=False)

    def records(self, site: Site) -> bool:
        """Whether ``record`` wants this site (``layers`` None means every layer)."""
        return self.record is not None and (self.layers is None or site.layer in self.layers)

    def touches(self, site: Site) -> bool:
        """Whether this site needs the explicit eager maths; others take the fused SDPA kernel."""
        masked = self.mask is not None and site.stack in self.mask_stacks
        ablated = site in self.ablate or any(site in row for row in self.row_ablate)
        return masked or ablated or self.records(site)


_ACTIVE: contextvars.ContextVar[Hooks | None] = contextvars.ContextVar("attnviz_hooks", default=None)
_SITES: weakref.WeakKeyDictionary[nn.Module, Site] = weakref.WeakKeyDictionary()
_LAYERS: weakref.WeakKeyDictionary[nn.Module, dict[Stack, tuple[int, ...]]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def active(hooks: Hooks | None) -> Iterator[None]:
    """Apply ``hooks`` to every attention call made in this context (None: plain fast path)."""
    token = _ACTIVE.set(hooks)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def site_of_name(name: str, encoder_only: bool, is_encoder_decoder: bool) -> Site | None:
    """Parse a module path like ``model.decoder.layers.3.encoder_attn`` into a Site."""
    numbers = re.findall(r"\.(\d+)(?:\.|$)", name)
    if not numbers:
        return None
    lowered = name.lower()
    stack: Stack
    if any(part in lowered for part in _CROSS_NAMES):
        stack = "cross"
    elif encoder_only or (is_encoder_decoder and "decoder" not in lowered):
        stack = "encoder"
    else:
        stack = "decoder"
    return Site(stack, int(numbers[0]))


def attach(model: nn.Module, encoder_only: bool) -> None:
    """Switch ``model`` to our attention function and index its attention sites.

    Raises NotImplementedError for architectures whose attention bypasses transformers'
    attention interface (e.g. BLOOM): recording them would silently miss layers.
    """
    register()
    is_enc_dec = bool(getattr(model.config, "is_encoder_decoder", False))
    layers: dict[Stack, set[int]] = {}
    for name, module in model.named_modules():
        site = site_of_name(name, encoder_only, is_enc_dec)
        if site is not None:
            _SITES[module] = site
            layers.setdefault(site.stack, set()).add(site.layer)
    _LAYERS[model] = {stack: tuple(sorted(found)) for stack, found in layers.items()}
    model.set_attn_implementation(IMPLEMENTATION)
    if model.config._attn_implementation != IMPLEMENTATION:
        raise NotImplementedError(f"{type(model).__name__} computes attention in its own code")


def stack_layers(model: nn.Module) -> dict[Stack, tuple[int, ...]]:
    """The layer indices of each attention stack of an attached model."""
    return _LAYERS[model]


def _site(module: nn.Module) -> Site:
    site = _SITES.get(module)
    if site is None:
        raise RuntimeError("attention module of a model that attnviz.hooks.attach() has not seen")
    return site


def _additive(allowed: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Turn a boolean allowed-matrix into an additive mask of ``like``'s dtype."""
    zero = torch.zeros((), dtype=like.dtype, device=like.device)
    blocked = torch.tensor(torch.finfo(like.dtype).min, dtype=like.dtype, device=like.device)
    return torch.where(allowed.to(like.device), zero, blocked)[None, None]


def _causal(module: nn.Module, query: torch.Tensor, key: torch.Tensor, is_causal: object) -> torch.Tensor | None:
    """The additive mask SDPA's ``is_causal`` stands for when the model skipped its mask, else None.

    Mirrors ``sdpa_attention_forward``: causal when more than one query, no mask, and the
    layer is causal; upper-left aligned like torch's ``is_causal``.
    """
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    q_len, k_len = query.shape[-2], key.shape[-2]
    return _causal_mask(q_len, k_len, query.dtype, query.device) if q_len > 1 and causal else None


@functools.lru_cache(maxsize=1)
def _causal_mask(q_len: int, k_len: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Eager's additive causal mask [1, 1, q, k], built once per shape (every recorded layer reuses it)."""
    allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril()
    return _additive(allowed, torch.empty((), dtype=dtype, device=device))


def attnviz_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    softcap: float | None = None,
    position_bias: torch.Tensor | None = None,
    **kwargs: object,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Eager attention with hooks; shapes as in transformers: q [b, h, q, d], k/v [b, kv_h, k, d]."""
    for name in _UNSUPPORTED_KWARGS:
        if kwargs.get(name) is not None:
            raise NotImplementedError(f"attnviz does not reproduce attention with '{name}' (attention sinks)")
    hooks = _ACTIVE.get()
    site = _site(module) if hooks is not None else None
    touched = hooks is not None and site is not None and hooks.touches(site)
    if not touched and softcap is None and position_bias is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = query.shape[1] // key.shape[1]
    key = repeat_kv(key, groups)
    value = repeat_kv(value, groups)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    q_len, k_len = query.shape[-2], key.shape[-2]
    if hooks is not None and hooks.mask is not None and site is not None and site.stack in hooks.mask_stacks:
        attention_mask = _additive(hooks.mask[k_len - q_len : k_len, :k_len], query)
    elif attention_mask is None:
        attention_mask = _causal(module, query, key, kwargs.get("is_causal"))
    given_mask = attention_mask
    if attention_mask is not None:
        attention_mask = attention_mask[..., :k_len]
    chunk = q_len if hooks is None or hooks.chunk_bytes is None else _chunk_rows(query, k_len, hooks.chunk_bytes)
    shared = hooks is not None and given_mask is not None and chunk < q_len
    widths = hooks.widths.setdefault(given_mask, {}) if shared else {}
    output = query.new_empty((*query.shape[:-1], value.shape[-1]))
    weights = None
    for start in range(0, q_len, chunk):
        rows = slice(start, min(start + chunk, q_len))
        mask_rows = _rows(attention_mask, rows)
        width = k_len if chunk == q_len else _known_last_key(widths, mask_rows, rows, k_len)
        scores = _scores(
            query[:, :, rows], key[:, :, :width], _keys(mask_rows, width), _keys(_rows(position_bias, rows), width),
            scaling, softcap,
        )  # fmt: skip
        weights = nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        weights = nn.functional.dropout(weights, p=dropout, training=module.training)
        if hooks is not None and site is not None:
            heads = hooks.ablate.get(site)
            if heads:
                weights[:, list(heads)] = 0.0  # softmax gave a fresh tensor: safe to edit in place
            for row, ablation in enumerate(hooks.row_ablate):
                if ablation.get(site):
                    weights[row, list(ablation[site])] = 0.0
            if hooks.records(site):
                hooks.record(AttentionCall(site, weights, value, mask_rows, module, start, q_len, k_len, scores))
        output[:, :, rows] = torch.matmul(weights, value[:, :, :width])
    return output.transpose(1, 2).contiguous(), weights if chunk == q_len else None


def _scores(
    query: torch.Tensor,
    key: torch.Tensor,
    mask: torch.Tensor | None,
    bias: torch.Tensor | None,
    scaling: float,
    softcap: float | None,
) -> torch.Tensor:
    """Eager's pre-softmax scores q·kᵀ·scale [softcap] + bias + mask for some query rows."""
    # In-place updates of the one score tensor: the same operations in the same order as
    # eager (so the same bits), without a fresh allocation per step.
    scores = torch.matmul(query, key.transpose(-1, -2)).mul_(scaling)
    if softcap is not None:
        scores.div_(softcap).tanh_().mul_(softcap)
    if bias is not None:
        scores.add_(bias)
    if mask is not None:
        scores.add_(mask)
    return scores


def _chunk_rows(query: torch.Tensor, n_keys: int, budget: int) -> int:
    """Query rows per chunk so that one chunk's float32 scores (and softmax) stay within ``budget`` bytes."""
    per_row = query.shape[0] * query.shape[1] * n_keys * 4 * 2
    return max(1, min(query.shape[-2], budget // per_row))


def _rows(tensor: torch.Tensor | None, rows: slice) -> torch.Tensor | None:
    """The query rows of a [.., queries, keys] mask or bias (rows of size 1 broadcast)."""
    return tensor if tensor is None or tensor.shape[-2] == 1 else tensor[..., rows, :]


def _keys(tensor: torch.Tensor | None, width: int) -> torch.Tensor | None:
    return tensor if tensor is None else tensor[..., :width]


def _known_last_key(
    widths: dict[tuple[int, int, int], int], mask: torch.Tensor | None, rows: slice, n_keys: int
) -> int:
    """:func:`_last_key` of a chunk of query rows, kept in ``widths`` (one pass's) for the later layers."""
    key = (rows.start, rows.stop, n_keys)
    if key not in widths:
        widths[key] = _last_key(mask, n_keys)
    return widths[key]


def _last_key(mask: torch.Tensor | None, n_keys: int) -> int:
    """Keys up to the last one any row may see; beyond it the softmax gives exactly 0.

    Only when every row sees some key: a fully masked row's softmax is not 0 anywhere.
    """
    if mask is None or not mask.is_floating_point():
        return n_keys
    allowed = mask > torch.finfo(mask.dtype).min
    if not bool(allowed.any(-1).all()):
        return n_keys
    seen = allowed.flatten(0, -2).any(0).nonzero()
    return int(seen[-1]) + 1


_REGISTERED = False


def register() -> None:
    """Register our attention and mask functions with transformers (idempotent)."""
    global _REGISTERED
    if not _REGISTERED:
        AttentionInterface.register(IMPLEMENTATION, attnviz_attention)
        # Without a mask function under our name, causal models would get no mask at all.
        AttentionMaskInterface.register(IMPLEMENTATION, attnviz_mask)
        _REGISTERED = True


def attnviz_mask(*args: object, dtype: torch.dtype = torch.float32, **kwargs: object) -> torch.Tensor | None:
    """SDPA's mask decision (None where ``is_causal`` or no mask will do) as eager's additive float mask.

    Layers nobody records then run SDPA's causal kernel like a plain forward; the eager
    maths rebuild the same causal mask (see :func:`_causal`), so weights stay exact.
    """
    allowed = sdpa_mask(*args, **kwargs)
    if allowed is None:
        return None
    return torch.where(allowed, torch.zeros((), device=allowed.device, dtype=dtype), torch.finfo(dtype).min)
