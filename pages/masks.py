"""Masks page: the masks a model really uses, and masks you build, apply to the model and compare."""

from __future__ import annotations

from ui.startup import import_library

import_library()  # first: the library is never imported beside the server's preload thread (ui.startup.IMPORTS)

import io
import math

import numpy as np
import pandas as pd
import streamlit as st

from attnviz.masks import builders as masks
from attnviz.masks import rules as mask_rules
from attnviz.masks.builders import MaskStats
from attnviz.masks.runs import MaskComparison, ModelMasks, prompt_tokens
from attnviz.models.loading import LoadedModel
from attnviz.tracing.inputs import PromptError
from attnviz.tracing.stacks import STACK_LABELS
from attnviz.views.figures import attention_heatmap, mask_heatmap, visible_text
from ui import cache
from ui.navigation import start_page
from ui.widgets import get_model, model_picker, prompt_fits, tokens_fit, warning

DEFAULT_PROMPT = "The capital of France is Paris. The capital of Italy is"
SHORT_PROMPT = "Hello there!"
DEFAULT_TARGET = "La capitale"
MAX_CELL_TOKENS = 24
EDITOR_ROW_PX = 35  # Streamlit's data editor row height: header plus n rows fit without inner scrolling
MASK_TYPES = (
    "Causal", "Bidirectional", "Sliding window", "Strided (sparse)", "Prefix-LM", "Block-diagonal",
    "Custom rule", "Custom cells",
)  # fmt: skip
VIEWS = ("Build and apply a mask", "Masks the model uses")


def layer_text(layers: tuple[int, ...]) -> str:
    """'layers 0–29' for a contiguous run, else the list."""
    if len(layers) == 1:
        return f"layer {layers[0]}"
    if layers == tuple(range(layers[0], layers[-1] + 1)):
        return f"layers {layers[0]}–{layers[-1]}"
    return "layers " + ", ".join(map(str, layers))


def build_mask(kind: str, ids: tuple[int, ...], tokens: tuple[str, ...]) -> np.ndarray | None:
    """Draw the chosen mask type's controls and return its [n, n] mask (None after a warning)."""
    n = len(tokens)
    top = max(n, 2)
    if kind == "Causal":
        return masks.causal(n)
    if kind == "Bidirectional":
        return masks.bidirectional(n)
    if kind == "Sliding window":
        window = st.slider(
            "Window w",
            1,
            top,
            min(4, n),
            help="Each token sees itself and the w − 1 tokens before it (Mistral, Gemma 2).",
        )
        return masks.sliding_window(n, window)
    if kind == "Strided (sparse)":
        stride = st.slider(
            "Stride", 1, top, max(1, math.isqrt(n)),
            help="Child et al. 2019: each token sees the last `stride` tokens plus every stride-th earlier one. "
            "A stride near √n keeps O(n√n) scores instead of n².",
        )  # fmt: skip
        return masks.strided(n, stride)
    if kind == "Prefix-LM":
        prefix = st.slider(
            "Prefix length",
            0,
            n,
            n // 2,
            help="The first tokens see each other both ways; the rest stay causal.",
        )
        return masks.prefix_lm(n, prefix)
    if kind == "Block-diagonal":
        separator = st.text_input(
            "New segment after each token containing", ".", max_chars=10,
            help="Tokens attend only inside their own segment, e.g. one segment per sentence or passage.",
        )  # fmt: skip
        inside = st.radio(
            "Inside a segment",
            ("causal", "bidirectional"),
            horizontal=True,
            help="The pattern within each block.",
        )
        if not separator:
            st.warning("Type a separator (for example '.') to split the prompt into segments.", icon="✏️")
            return None
        segments = masks.segments_after(tokens, separator)
        st.caption(f"{int(segments.max()) + 1 if n else 0} segment(s)")
        return masks.block_diagonal(
            segments, within=masks.causal if inside == "causal" else masks.bidirectional
        )
    if kind == "Custom rule":
        rule = st.text_input(
            "Rule", "k <= q and q - k < 3", max_chars=mask_rules.MAX_RULE_CHARS,
            help=mask_rules.RULE_HELP + ". The rule is parsed, never executed.",
        )  # fmt: skip
        try:
            return mask_rules.from_rule(n, rule)
        except mask_rules.MaskRuleError as error:
            warning(str(error))
            return None
    if n > MAX_CELL_TOKENS:
        st.warning(
            f"The prompt has {n} tokens; editing cells works up to {MAX_CELL_TOKENS}. "
            "Shorten the prompt or use a custom rule.",
            icon="✏️",
        )
        return None
    st.caption("Tick the keys (columns) each query (row) may see. Starts from the causal mask.")
    labels = [f"{i}: {visible_text(token)}" for i, token in enumerate(tokens)]
    # Columns are named by position only (a 44 px header cannot hold a token; its tooltip and the
    # row of the same number name it), and the editor is tall enough to need no scrolling inside.
    keys = [str(i) for i in range(n)]
    frame = pd.DataFrame(masks.causal(n), index=labels, columns=keys)
    config = {
        key: st.column_config.CheckboxColumn(key, width=44, help=f"Key {label}") for key, label in zip(keys, labels)
    }
    edited = st.data_editor(
        frame, key=f"cells-{hash(ids)}", disabled=False, column_config=config, height=EDITOR_ROW_PX * (n + 1) + 3
    )
    return edited.to_numpy(dtype=bool)


def show_cost(stats: MaskStats) -> None:
    """Density and the number of scores computed against dense n²."""
    kept, full, density, future = st.columns(4)
    kept.metric(
        "Scores computed",
        f"{stats.kept:,}",
        help="Query–key pairs the mask keeps: the work sparse attention does.",
    )
    full.metric("Dense attention (n²)", f"{stats.full:,}", help=f"n = {stats.n} tokens.")
    density.metric("Density", f"{stats.density:.1%}", help="Share of the n² entries kept.")
    future.metric("Entries on later tokens", f"{stats.future:,}", help="Pairs with key after query (k > q).")


def mask_csv(allowed: np.ndarray) -> str:
    """The mask as 0/1 CSV, rows = queries, columns = keys."""
    buffer = io.StringIO()
    np.savetxt(buffer, allowed.astype(int), fmt="%d", delimiter=",")
    return buffer.getvalue()


def prediction_table(result: MaskComparison, which: str) -> None:
    """Top next tokens and their probabilities for the ``original`` or ``masked`` run."""
    run = result.original if which == "original" else result.masked
    if run.prediction is None:
        return
    st.dataframe(
        pd.DataFrame(
            {"next token": [visible_text(t) for t in run.prediction.tokens], "probability": run.prediction.probs}
        ),
        hide_index=True,
        width="stretch",
        column_config={
            "probability": st.column_config.ProgressColumn(
                "probability", format="%.3f", min_value=0.0, max_value=1.0
            )
        },
        key=f"top-{which}",
    )


def show_effect(result: MaskComparison, loaded: LoadedModel, stats: MaskStats) -> None:
    """The chosen head's attention and the model's output, original next to masked."""
    if loaded.kind == "decoder" and stats.future:
        st.error(
            f"**This decoder now sees the future.** The mask lets tokens attend to {stats.future:,} later "
            f"position{'' if stats.future == 1 else 's'}, and {result.future_attention:.1%} of the model's "
            "attention goes there. It was trained "
            "never to see what comes next, so every next-token prediction on the prompt is no longer a real "
            "prediction — and the outputs below change.",
            icon="🔮",
        )
    layer_col, head_col = st.columns(2)
    layer = layer_col.selectbox("Layer", range(loaded.n_layers), help="Which layer's attention to draw.")
    head = head_col.selectbox("Head", range(loaded.n_heads), help="Which query head's attention to draw.")
    original, masked = st.columns(2)
    # One colour scale for both pictures, so equal colours mean equal weights.
    top = float(max(result.original.attention[layer, head].max(), result.masked.attention[layer, head].max()))
    for column, run, name in (
        (original, result.original, "model's own mask"),
        (masked, result.masked, "your mask"),
    ):
        figure = attention_heatmap(
            run.attention[layer, head],
            result.tokens,
            result.tokens,
            title=f"Layer {layer}, head {head}: {name}",
        )
        column.plotly_chart(figure.update_traces(zmin=0.0, zmax=top), key=f"attention-{name}")
    st.subheader("What the model outputs")
    if result.original.loss is not None and result.masked.loss is not None:
        own, yours, largest = st.columns(3)
        change = result.masked.loss - result.original.loss
        moved = round(change, 3) != 0
        own.metric(
            "Loss on the prompt, own mask",
            f"{result.original.loss:.3f}",
            help="Mean next-token cross-entropy.",
        )
        yours.metric(
            "Loss on the prompt, your mask",
            f"{result.masked.loss:.3f}",
            # No arrow or colour for a change that rounds to zero: "↑ +0.000" in red said the loss went up.
            delta=f"{change:+.3f}" if moved else "no change",
            delta_color="inverse" if moved else "off",
            delta_arrow="auto" if moved else "off",
        )
        largest.metric(
            "Largest logit change",
            f"{result.output_change:.3f}",
            help="Largest absolute difference between the two runs' logits, over every position and token.",
        )
        original_col, masked_col = st.columns(2)
        with original_col:
            st.markdown("**Next token, model's own mask**")
            prediction_table(result, "original")
        with masked_col:
            st.markdown("**Next token, your mask**")
            prediction_table(result, "masked")
    else:
        st.metric(
            "Largest change of the final hidden states",
            f"{result.output_change:.4f}",
            help="This model has no language-model head, so the change is measured on its last hidden states.",
        )


def build_and_apply(loaded: LoadedModel, model_name: str, text: str) -> None:
    """The builder view: mask controls over the prompt, the mask, its cost, and the model with and without it."""
    if loaded.kind == "encoder-decoder":
        st.info(
            "Applying a mask works on decoder-only and encoder-only models. "
            "See this model's encoder, decoder and cross-attention masks under 'Masks the model uses'.",
            icon="ℹ️",
        )
        return
    if not prompt_fits(text):
        return
    try:
        ids, tokens = prompt_tokens(loaded, text)
    except PromptError as error:
        warning(str(error))
        return
    controls, picture = st.columns([1, 2])
    with controls:
        # Open on the mask the model itself uses: causal for a decoder, bidirectional for an encoder.
        kind = st.selectbox(
            "Mask", MASK_TYPES, index=MASK_TYPES.index("Causal" if loaded.kind == "decoder" else "Bidirectional"),
            help="The pattern of allowed query → key pairs to apply in every layer.",
        )  # fmt: skip
        if kind != "Custom cells":
            allowed = build_mask(kind, ids, tokens)
    if kind == "Custom cells":  # the cell editor needs the page's full width
        allowed = build_mask(kind, ids, tokens)
    if allowed is None:
        return
    with picture:
        st.plotly_chart(mask_heatmap(allowed, tokens, tokens, title=f"{kind} mask"), key="mask-figure")
    stats = masks.mask_stats(allowed)
    show_cost(stats)
    st.download_button(
        "Download the mask (CSV)", mask_csv(allowed), file_name="mask.csv", mime="text/csv",
        help="1 = allowed, rows are queries, columns are keys.",
    )  # fmt: skip
    empty = np.flatnonzero(~allowed.any(axis=1))
    if empty.size:
        st.warning(
            f"Query row(s) {', '.join(map(str, empty[:10]))} allow no key at all; every token must see at least "
            "one token before the mask can be applied.",
            icon="✏️",
        )
        return
    with st.spinner("Running the model with its own mask and with yours…"):
        result = cache.mask_comparison(model_name, ids, allowed)
    show_effect(result, loaded, stats)


def labelled(tokens: tuple[str, ...], padding: np.ndarray) -> list[str]:
    """Axis labels: pad positions are marked so padding is visible in the mask."""
    return [f"{token} ⟨pad⟩" if pad else token for token, pad in zip(tokens, padding, strict=True)]


def describe(allowed: np.ndarray, query_pad: np.ndarray, key_pad: np.ndarray) -> str:
    """The pattern over the real tokens, and whether pad keys are blocked."""
    name = masks.pattern_name(allowed[~query_pad][:, ~key_pad])
    if not key_pad.any():
        return name
    blocked = "blocked for every query" if not allowed[:, key_pad].any() else "NOT blocked"
    return (
        f"{name} over the {int((~key_pad).sum())} real tokens; the {int(key_pad.sum())} pad key(s) {blocked}"
    )


def draw_groups(read: ModelMasks, row: int, key: str, per_row: int = 3) -> None:
    """One mask figure per group of layers that applied the same mask, ``per_row`` side by side."""
    columns = st.columns(min(per_row, len(read.groups)))
    for index, group in enumerate(read.groups):
        queries, keys = read.axes(group.stack, row)
        query_pad, key_pad = read.pads(group.stack, row)
        query_labels, key_labels = labelled(queries, query_pad), labelled(keys, key_pad)
        with columns[index % len(columns)]:
            st.plotly_chart(
                mask_heatmap(group.allowed[row], query_labels, key_labels, title=STACK_LABELS[group.stack]),
                key=f"{key}-{index}",
            )
            st.caption(f"{layer_text(group.layers)}: {describe(group.allowed[row], query_pad, key_pad)}")


def model_masks(loaded: LoadedModel, model_name: str, text: str) -> None:
    """The reading view: masks the loaded model applied to a prompt, a padded batch and a chat prompt."""
    st.caption(
        "Read from the run itself: the additive mask transformers handed to each attention call "
        "(0 = allowed, dtype minimum = blocked), grouped by layers that used the same mask."
    )
    second = st.text_input(
        "A second prompt, batched with the first",
        SHORT_PROMPT,
        help="Prompts of different lengths in one batch are padded; the mask blocks the padding.",
    )
    target = None
    if loaded.kind == "encoder-decoder":
        target = st.text_input(
            "Decoder text", DEFAULT_TARGET, help="The decoder side's tokens (queries of cross-attention)."
        )
    prompts = (cache.Prompt(model_name, text, target=target), cache.Prompt(model_name, second, target=target))
    try:
        if not all(prompt_fits(p.text) and tokens_fit(p) for p in prompts):
            return
        with st.spinner("Running the model…"):
            single = cache.model_masks(model_name, prompts[:1])
            batch = cache.model_masks(model_name, prompts)
    except PromptError as error:
        warning(str(error))
        return
    st.subheader("The prompt's masks")
    draw_groups(single, 0, "single")
    st.subheader("Padding: two prompts in one batch")
    st.caption(
        f"Padded to {len(batch.tokens[0])} tokens on the {loaded.tokenizer.padding_side}; "
        "pad positions are marked ⟨pad⟩ and no real token may attend to them."
    )
    for row, column in enumerate(st.columns(2)):
        with column:
            st.markdown(f"**Batch row {row}**")
            draw_groups(batch, row, f"batch-{row}", per_row=1)
    if loaded.info.has_chat_template:
        st.subheader("Chat template")
        st.caption("The same prompt as a user message through the model's chat template.")
        chat = cache.model_masks(model_name, (cache.Prompt(model_name, text, chat=True, target=target),))
        draw_groups(chat, 0, "chat")
    sliding_window_reference(len(single.tokens[0]), single.tokens[0])


def sliding_window_reference(n: int, tokens: tuple[str, ...]) -> None:
    """The sliding-window mask transformers' own code builds for a Mistral / Gemma 2 config."""
    st.subheader("Sliding window, as transformers builds it")
    family_col, window_col = st.columns(2)
    family = family_col.selectbox(
        "Config",
        ("mistral", "gemma2"),
        help="Only a configuration is created; no model weights are involved.",
    )
    window = window_col.slider("sliding_window", 1, max(n, 2), min(4, n), help="The config's sliding_window.")
    reference = masks.transformers_sliding_window(n, window, family)
    st.plotly_chart(
        mask_heatmap(reference, tokens, tokens, title=f"{family}, sliding_window={window}"),
        key="sliding-reference",
    )
    same = np.array_equal(reference, masks.sliding_window(n, window))
    st.caption(
        f"Built by transformers.masking_utils.create_sliding_window_causal_mask over the prompt's {n} tokens; "
        f"{'identical to' if same else 'DIFFERENT from'} attnviz's sliding-window builder with w = {window}."
    )


start_page()
st.title("Masks")
st.caption(
    "A mask decides which tokens each token may attend to. See the masks a model really uses, "
    "or build one, apply it to every layer through attnviz's attention function, and see what changes."
)
model = model_picker()
loaded_model = get_model(model)
if loaded_model is None:
    st.stop()
prompt = st.text_area(
    "Prompt", DEFAULT_PROMPT, height=80, key="prompt",
    help="Both views use this prompt: masks are built over its tokens, and the model's own masks are read from it.",
)  # fmt: skip
view = st.radio("View", VIEWS, horizontal=True, help="Build your own mask, or inspect the model's own masks.")
if view == VIEWS[0]:
    build_and_apply(loaded_model, model, prompt)
else:
    model_masks(loaded_model, model, prompt)
