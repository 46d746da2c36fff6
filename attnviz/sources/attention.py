"""Attention from an answer into the sources (passages or sentences) of its prompt, reduced while the pass runs.

One teacher-forced pass over prompt + answer; each attention call is reduced at once to
per-source sums for the queries that predict answer tokens, so no layers x heads x n x n
tensor is ever kept. :func:`aggregate` turns those sums into [answer_tokens, sources] scores.
For token-level highlights, the chosen heads' attention on every prompt token is kept too.
:func:`retrieval_batch` scores one answer after many prompts (a study's orders) in batched passes
that record only the retrieval heads' layers.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attnviz.hooks import AttentionCall, Hooks
from attnviz.models import devices
from attnviz.models.loading import LoadedModel
from attnviz.sources.passages import PassagePrompt
from attnviz.tracing.forward import forward
from attnviz.tracing.inputs import PromptError, pad

Head = tuple[int, int]
# Query x key cells per head that one batched pass of retrieval_batch may hold: as many as one prompt of
# 2,048 tokens alone, so a batch of a question's orders never needs more score memory than a long prompt.
BATCH_SCORE_CELLS = 2_048 * 2_048


@dataclass(frozen=True)
class PassageAttention:
    """Attention from answer tokens into passages, per layer and head, reduced while tracing.

    ``mass`` [layers, heads, answer_tokens, passages] is the attention weight the query
    predicting each answer token puts on each passage's tokens; ``value_mass`` is the same
    with every key weighted by its value vector's norm (as a share of the weighted total);
    ``sink`` [layers, heads, answer_tokens] is the weight on the first token. ``tokens``
    [answer_tokens, prompt_tokens] (when heads were given) is the mean over those heads of
    each one's attention as shares of what it gives to all sources (so it sums over a
    source's tokens to that head set's retrieval score).
    """

    mass: np.ndarray
    value_mass: np.ndarray
    sink: np.ndarray
    tokens: np.ndarray | None = None


def _sequences(
    loaded: LoadedModel, prompts: Sequence[np.ndarray], answer_ids: np.ndarray
) -> dict[str, object]:
    """Model inputs for each prompt + the same answer, asking only for the logits that predict answer tokens when possible.

    Rows of unequal length are left-padded, with positions counted from each row's first real token,
    so every row's answer ends at the last column and its tokens keep the positions they have alone.
    """
    input_ids, mask = pad([[*map(int, ids), *map(int, answer_ids)] for ids in prompts], 0, left=True)
    inputs: dict[str, object] = {"input_ids": input_ids, "attention_mask": mask}
    if not bool(mask.all()):
        inputs["position_ids"] = (mask.cumsum(-1) - 1).clamp_min(0)
    if "logits_to_keep" in inspect.signature(loaded.model.forward).parameters:
        inputs["logits_to_keep"] = len(answer_ids) + 1  # [n, vocab] logits would be 400 MB at 2,000 tokens
    return inputs


def _answer_logprobs(logits: torch.Tensor, answer_ids: np.ndarray) -> np.ndarray:
    """Log-probability [rows, answer_tokens] of each answer token given everything before it (logits end at the answer)."""
    predicting = logits[:, -(len(answer_ids) + 1) : -1].float()
    logprobs = torch.log_softmax(predicting, dim=-1)
    targets = torch.as_tensor(answer_ids, device=logprobs.device)[None, :, None].expand(len(logprobs), -1, 1)
    return logprobs.gather(-1, targets)[..., 0].cpu().numpy()


def answer_logprobs(loaded: LoadedModel, prompt_ids: np.ndarray, answer_ids: np.ndarray) -> np.ndarray:
    """Log-probability of each answer token after ``prompt_ids`` (teacher forcing, one fast pass)."""
    outputs = forward(loaded, _sequences(loaded, [prompt_ids], answer_ids))
    return _answer_logprobs(outputs.logits, answer_ids)[0]


def passage_attention(
    loaded: LoadedModel, prompt: PassagePrompt, answer_ids: np.ndarray, heads: Sequence[Head] = ()
) -> tuple[PassageAttention, np.ndarray]:
    """One forward pass over prompt + answer, keeping per-source attention sums and the answer's log-probs.

    ``heads`` also keeps those heads' per-token shares (``PassageAttention.tokens``).
    """
    n_prompt = len(prompt.ids)
    n = n_prompt + len(answer_ids)
    predicting = slice(n_prompt - 1, n - 1)  # the queries that predict answer tokens
    # Made on the input device; a layer on another device (spread by device_map) gets its own copy once.
    membership = torch.zeros(n, len(prompt.spans), device=loaded.device)
    for index, (start, end) in enumerate(prompt.spans):
        membership[start:end, index] = 1.0
    memberships = {membership.device: membership}
    mass: dict[int, torch.Tensor] = {}
    value_mass: dict[int, torch.Tensor] = {}
    sink: dict[int, torch.Tensor] = {}
    token_heads: dict[int, list[int]] = {}
    for layer, head in heads:
        token_heads.setdefault(layer, []).append(head)
    token_sum = torch.zeros(len(answer_ids), n_prompt, device=loaded.device)

    def reduce(call: AttentionCall) -> None:
        if call.site.stack != "decoder":
            return
        weights = call.weights[0, :, predicting, :].float()  # [heads, answer, keys]
        weighted = weights * call.value[0].float().norm(dim=-1)[:, None, :]
        on_device = memberships.setdefault(weights.device, membership.to(weights.device))
        layer = call.site.layer
        mass[layer] = weights @ on_device
        value_mass[layer] = (weighted @ on_device) / weighted.sum(-1, keepdim=True).clamp_min(1e-12)
        sink[layer] = weights[:, :, 0]
        if layer in token_heads:
            chosen = weights[token_heads[layer], :, :n_prompt] * on_device.sum(-1)[:n_prompt]
            shares = chosen / chosen.sum(-1, keepdim=True).clamp_min(1e-12)
            token_sum.add_(shares.sum(0).to(token_sum.device))

    outputs = forward(loaded, _sequences(loaded, [prompt.ids], answer_ids), Hooks(record=reduce))
    layers = sorted(mass)
    attention = PassageAttention(
        mass=devices.stack_across([mass[layer] for layer in layers]).cpu().numpy(),
        value_mass=devices.stack_across([value_mass[layer] for layer in layers]).cpu().numpy(),
        sink=devices.stack_across([sink[layer] for layer in layers]).cpu().numpy(),
        tokens=(token_sum / len(heads)).cpu().numpy() if heads else None,
    )
    return attention, _answer_logprobs(outputs.logits, answer_ids)[0]


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


def retrieval_scores(attention: PassageAttention, heads: Sequence[Head]) -> np.ndarray:
    """[answer_tokens, passages] calibrated attention: the retrieval heads' passage shares, averaged."""
    return aggregate(attention, heads=heads, exclude_sink=True, shares=True)


def _retrieval_pass(
    loaded: LoadedModel, prompts: Sequence[PassagePrompt], answer_ids: np.ndarray, heads: Sequence[Head]
) -> tuple[np.ndarray, np.ndarray]:
    """One batched pass of :func:`retrieval_batch`: scores [rows, answer_tokens, sources], log-probs [rows, answer_tokens]."""
    inputs = _sequences(loaded, [prompt.ids for prompt in prompts], answer_ids)
    n = inputs["input_ids"].shape[1]
    predicting = slice(n - len(answer_ids) - 1, n - 1)  # every row's answer ends at the last column
    membership = torch.zeros(len(prompts), n, len(prompts[0].spans), device=loaded.device)
    for row, prompt in enumerate(prompts):
        pad = n - len(answer_ids) - len(prompt.ids)
        for index, (start, end) in enumerate(prompt.spans):
            membership[row, pad + start : pad + end, index] = 1.0
    memberships = {membership.device: membership}
    by_layer: dict[int, list[int]] = {}
    for layer, head in sorted(set(heads)):  # (layer, head) order, as retrieval_scores takes them
        by_layer.setdefault(layer, []).append(head)
    mass: dict[int, torch.Tensor] = {}

    def reduce(call: AttentionCall) -> None:
        if call.site.stack != "decoder":
            return
        weights = call.weights[
            :, by_layer[call.site.layer], predicting, :
        ].float()  # [rows, heads, answer, keys]
        on_device = memberships.setdefault(weights.device, membership.to(weights.device))
        mass[call.site.layer] = weights @ on_device[:, None]  # [rows, heads, answer, sources]

    outputs = forward(loaded, inputs, Hooks(record=reduce, layers=frozenset(by_layer)))
    chosen = torch.cat([mass[layer].cpu() for layer in sorted(mass)], dim=1).numpy()
    return passage_shares(chosen).mean(axis=1), _answer_logprobs(outputs.logits, answer_ids)


def retrieval_batch(
    loaded: LoadedModel, prompts: Sequence[PassagePrompt], answer_ids: np.ndarray, heads: Sequence[Head]
) -> tuple[np.ndarray, np.ndarray]:
    """The same answer teacher-forced after each of ``prompts`` (the same sources, e.g. in other orders), batched.

    Returns :func:`retrieval_scores` of every prompt [prompts, answer_tokens, sources] and the answer's
    log-probabilities [prompts, answer_tokens]. Only the layers holding ``heads`` take the eager maths
    (the others run SDPA), and each keeps just its heads' per-source sums, per row: no attention map is
    kept. Each head's sink drops out of its shares, so it is not needed. Prompts go in passes of at most
    :data:`BATCH_SCORE_CELLS` query x key cells per head (padded rows included), bounding the scores' memory.
    """
    if not heads:
        raise PromptError("Choose at least one head to score with.")
    if len({len(prompt.spans) for prompt in prompts}) != 1:
        raise PromptError("The prompts of one batch must have the same number of sources.")
    longest = max(len(prompt.ids) for prompt in prompts) + len(answer_ids)
    per_pass = max(1, BATCH_SCORE_CELLS // longest**2)
    parts = [
        _retrieval_pass(loaded, prompts[start : start + per_pass], answer_ids, heads)
        for start in range(0, len(prompts), per_pass)
    ]
    return np.concatenate([scores for scores, _ in parts]), np.concatenate(
        [logprobs for _, logprobs in parts]
    )
