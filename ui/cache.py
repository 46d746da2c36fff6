"""Streamlit caching of models and results: the one place cache keys are built.

``st.cache_resource`` keeps one LoadedModel per name for all sessions (its lock serialises
use) and one Trace per :class:`Prompt`; ``st.cache_data`` keeps the small results derived
from a trace, so moving a slider never re-runs the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

import attnviz
from attnviz.ablation import AblationResult, ablate_heads
from attnviz.aggregate import ValueNorms, aggregate_map, value_norms
from attnviz.grid import HeadGrid, grid_of_thumbnails, head_grid
from attnviz.hooks import Site, Stack
from attnviz.loading import LoadedModel
from attnviz.mask_runs import MaskComparison, ModelMasks, compare_mask, read_masks
from attnviz.stats import HeadStats, head_stats, induction_scores
from attnviz.summary import Summary, summarise
from attnviz.trace import Messages, Trace, encode, stack_view, trace
from attnviz.walkthrough import Verification, Walkthrough, first_layer, toy, verify

torch.set_num_threads(min(2, torch.get_num_threads()))
# Beyond this many tokens the head grid and statistics come from a Summary and only the
# chosen head is recorded in full (all layers' maps would be 1.1 GB at 1,024 SmolLM2 tokens).
LONG_PROMPT = 1024


@dataclass(frozen=True)
class Prompt:
    """What one trace is of: a model and either plain text or a chat message (plus decoder text)."""

    model: str
    text: str
    chat: bool = False
    target: str | None = None

    @property
    def messages(self) -> Messages | None:
        return [{"role": "user", "content": self.text}] if self.chat else None


@st.cache_resource(show_spinner=False, max_entries=4)
def load(name: str) -> LoadedModel:
    """The shared model for ``name`` (no st elements inside: cached functions replay them)."""
    return attnviz.load_model(name)


@st.cache_resource(show_spinner=False, max_entries=3, ttl=3600)
def prompt_trace(prompt: Prompt) -> Trace:
    """Trace once per prompt, keeping the weights in float16.

    float16 holds a weight in [0, 1] to 3 significant digits, which is all any view shows
    (colours, hover ``.3g``, bertviz's 3 decimals; statistics and aggregates compute in
    float32), and halves the memory and the copying. A resource cache, not a data cache:
    a 1,024-token SmolLM2 trace is 0.6 GB, which ``st.cache_data`` would pickle and copy
    on every rerun. The arrays are made read-only so the one shared Trace cannot be changed.
    """
    result = trace(
        load(prompt.model),
        None if prompt.chat else prompt.text,
        messages=prompt.messages,
        target=prompt.target,
        float16=True,
    )
    for array in (result.attention, result.decoder_attention, result.cross_attention):
        if array is not None:
            array.flags.writeable = False
    return result


@st.cache_data(show_spinner=False, max_entries=64)
def token_count(prompt: Prompt) -> int:
    """How many tokens the prompt has (decides between a full trace and a summary)."""
    return len(encode(load(prompt.model), None if prompt.chat else prompt.text, prompt.messages))


def is_long(prompt: Prompt) -> bool:
    return token_count(prompt) > LONG_PROMPT


@st.cache_data(show_spinner=False, max_entries=8)
def summary(prompt: Prompt) -> Summary:
    """Every head's thumbnail and statistics of the main stack, reduced during one forward pass (KB, not GB)."""
    text = None if prompt.chat else prompt.text
    return summarise(load(prompt.model), text, messages=prompt.messages, target=prompt.target)


@st.cache_data(show_spinner=False, max_entries=8)
def summary_grid(prompt: Prompt) -> HeadGrid:
    """The head grid of a long prompt, from its summary's thumbnails."""
    found = summary(prompt)
    return grid_of_thumbnails(found.thumbnails, found.layers, found.heads)


@st.cache_resource(show_spinner=False, max_entries=4, ttl=3600)
def head_trace(prompt: Prompt, layer: int, head: int) -> Trace:
    """One head's full map of a long prompt (268 MB at 8,192 tokens), its queries recorded in chunks."""
    text = None if prompt.chat else prompt.text
    result = trace(
        load(prompt.model), text, messages=prompt.messages, target=prompt.target, layers=[layer], heads=[head],
        max_tokens=None,
    )  # fmt: skip
    for array in (result.attention, result.decoder_attention, result.cross_attention):
        if array is not None:
            array.flags.writeable = False
    return result


@st.cache_data(show_spinner=False, max_entries=16)
def grid(prompt: Prompt, stack: Stack) -> HeadGrid:
    """Thumbnails of every head of one stack (small: the browser never gets the full tensor)."""
    traced = prompt_trace(prompt)
    view = stack_view(traced, stack)
    return head_grid(view.attention, view.layers, traced.heads)


@st.cache_data(show_spinner=False, max_entries=16)
def statistics(prompt: Prompt, stack: Stack) -> HeadStats:
    """Entropy, distance, first-token and previous-token statistics of every head of one stack."""
    traced = prompt_trace(prompt)
    view = stack_view(traced, stack)
    return head_stats(view.attention, view.layers, traced.heads, self_attention=stack != "cross")


@st.cache_data(show_spinner=False, max_entries=4)
def induction(model: str) -> np.ndarray:
    """Induction score [layers, heads] of the model's main stack, on repeated random tokens."""
    return induction_scores(load(model))


@st.cache_data(show_spinner=False, max_entries=64)
def toy_walkthrough(sentence: str, mask_choice: str, scaled: bool, temperature: float) -> Walkthrough:
    """The Learn page's toy walkthrough (tiny: 6 numbers per token)."""
    return toy(sentence, mask_choice, scaled, temperature)


@st.cache_data(show_spinner=False, max_entries=32)
def model_walkthrough(
    model: str, sentence: str, mask_choice: str, scaled: bool, temperature: float
) -> Walkthrough:
    """The loaded decoder's first layer recomputed step by step (at most 16 tokens)."""
    return first_layer(load(model), sentence, mask_choice, scaled, temperature)


@st.cache_data(show_spinner=False, max_entries=32)
def walkthrough_check(model: str, sentence: str, mask_choice: str) -> Verification:
    """The recomputed first layer against the model's own weights and output."""
    return verify(load(model), sentence, mask_choice)


@st.cache_data(show_spinner=False, max_entries=16)
def norms(prompt: Prompt, stack: Stack) -> ValueNorms:
    """‖f_h(x_k)‖ for every head of one stack (one extra forward pass)."""
    return value_norms(load(prompt.model), prompt_trace(prompt), stack)


@st.cache_data(show_spinner=False, max_entries=64)
def aggregate(prompt: Prompt, stack: Stack, name: str, layer: int) -> np.ndarray:
    """The [queries, keys] map of one aggregate (see attnviz.aggregate.AGGREGATES)."""
    value = norms(prompt, stack) if name == "value-norm weighted" else None
    return aggregate_map(stack_view(prompt_trace(prompt), stack), name, layer, value)


@st.cache_data(show_spinner=False, max_entries=32)
def ablation(prompt: Prompt, sites: tuple[tuple[Site, tuple[int, ...]], ...], k: int) -> AblationResult:
    """Top-k next tokens with and without the heads of ``sites`` switched off."""
    # Ablation needs only the prompt's inputs: for a long prompt, one head's trace carries them.
    traced = head_trace(prompt, 0, 0) if is_long(prompt) else prompt_trace(prompt)
    return ablate_heads(load(prompt.model), traced, dict(sites), k)


@st.cache_data(show_spinner=False, max_entries=8)  # two runs' attention: ~35 MB at 128 tokens
def mask_comparison(model: str, input_ids: tuple[int, ...], allowed: np.ndarray) -> MaskComparison:
    """The prompt's run with the model's own mask next to the run under ``allowed``, once per mask."""
    return compare_mask(load(model), input_ids, allowed)


@st.cache_data(show_spinner=False, max_entries=16)
def model_masks(model: str, prompts: tuple[Prompt, ...]) -> ModelMasks:
    """Masks the model applied to a batch of prompts of one model (all with the same decoder text)."""
    batch = [p.messages if p.chat else p.text for p in prompts]
    return read_masks(load(model), batch, prompts[0].target if prompts else None)
