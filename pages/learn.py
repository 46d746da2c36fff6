"""Learn page: how attention works, step by step, on a toy or the loaded model's first layer, plus its variants."""

from __future__ import annotations

from ui.startup import import_library

import_library()  # first: the library is never imported beside the server's preload thread (ui.startup.IMPORTS)

import math

import pandas as pd
import streamlit as st
import torch

from attnviz.learn import figures as learn_figures
from attnviz.learn import lessons, variants
from attnviz.learn.recompute import MAX_MODEL_TOKENS
from attnviz.learn.steps import steps
from attnviz.learn.toy import MAX_TOY_WORDS
from attnviz.learn.walkthrough import MASK_CHOICES, Walkthrough, WalkthroughError
from attnviz.masks import builders as masks
from attnviz.views.figures import attention_heatmap, mask_heatmap, visible_text
from ui import cache
from ui.navigation import start_page
from ui.widgets import error, get_model, model_picker, plain, warning

start_page()

DEFAULT_SENTENCE = "The cat sat on the mat"
CROSS_SOURCE = "le chat est assis"
MAX_CHARS = 80
SOURCES = ("Toy (6 numbers per token)", "Loaded model's first layer")
SECTIONS = ("Step by step", "FlashAttention", "Variants", "Cost")
# Static styles only: no user text ever goes into this HTML.
PRESENTER_CSS = """<style>
[data-testid="stAppViewContainer"], [data-testid="stMain"] { background: #ffffff; color: #000000; }
[data-testid="stMarkdownContainer"] p, [data-testid="stMarkdownContainer"] li { font-size: 1.45rem; line-height: 1.45; }
[data-testid="stWidgetLabel"] p { font-size: 1.2rem; font-weight: 600; }
h1 { font-size: 2.3rem !important; } h2, h3 { font-size: 1.8rem !important; color: #000000; }
.stButton button { font-size: 1.3rem; font-weight: 700; padding: 0.3rem 0.6rem; white-space: nowrap; border: 2px solid #000000; }
[data-testid="stMainBlockContainer"] { padding-top: 0.8rem; padding-left: 1.5rem; padding-right: 1.5rem; }
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], header[data-testid="stHeader"] { display: none; }
</style>"""


def walkthrough(
    source: str, model: str, sentence: str, mask: str, scaled: bool, temperature: float
) -> Walkthrough:
    """The chosen walkthrough, or a readable message and a stop."""
    try:
        if source == SOURCES[0]:
            return cache.toy_walkthrough(sentence, mask, scaled, temperature)
        with st.spinner("Recomputing the first layer…"):
            return cache.model_walkthrough(model, sentence, mask, scaled, temperature)
    except WalkthroughError as problem:
        warning(str(problem))
        st.stop()


def go_to(index: int) -> None:
    """Move to step ``index`` and hide the next softmax again (predict, then reveal)."""
    st.session_state.learn_step = index
    st.session_state.learn_revealed = False
    st.session_state.pop("learn_guess", None)  # a new question starts without a guess


def predict_then_reveal(walk: Walkthrough, head: int) -> bool:
    """Ask which key the last real token reads most; True once the class has revealed the answer."""
    if st.session_state.get("learn_revealed"):
        return True
    query = len(walk.tokens) - walk.padding - 1
    allowed = [j for j in range(len(walk.tokens)) if walk.mask[query, j]]
    st.info(
        plain(
            f"Predict first: which token will token {query} ({visible_text(walk.tokens[query])}) "
            f"attend to most in head {head}?"
        ),
        icon="🤔",
    )
    st.selectbox(
        "Your prediction",
        allowed,
        index=None,
        placeholder="Pick a token",
        key="learn_guess",
        format_func=lambda j: f"{j}: {visible_text(walk.tokens[j])}",
        help="Pick a token, then reveal the softmax to see if you were right.",
    )
    st.button(
        "Reveal the softmax",
        key="learn_reveal",
        on_click=lambda: st.session_state.update(learn_revealed=True),
    )
    return False


def reveal_answer(walk: Walkthrough, head: int) -> None:
    """Say which token won and whether the guess was right."""
    query = len(walk.tokens) - walk.padding - 1
    row = walk.weights[head, query]
    best = int(row.argmax())
    guess = st.session_state.get("learn_guess")
    if guess is None:
        verdict = ""  # nobody guessed: nothing to judge
    elif guess == best:
        verdict = " Your guess was right!"
    else:
        verdict = (
            f" Your guess, token {guess} ({visible_text(walk.tokens[guess])}), was wrong: "
            f"it got weight {row[guess]:.2f}."
        )
    st.success(
        plain(
            f"Token {query} attends most to token {best} ({visible_text(walk.tokens[best])}) "
            f"with weight {row[best]:.2f}.{verdict}"
        )
    )


def model_check(model: str, sentence: str, mask: str, walk: Walkthrough) -> None:
    """State and show the check that the recomputed weights equal the model's own."""
    with st.spinner("Checking against the model's own forward pass…"):
        check = cache.walkthrough_check(model, sentence, mask)
    note = "" if walk.scale != 1.0 and walk.temperature == 1.0 else " (checked at the model's own scale)"
    text = (
        f"Recomputed weights of all {check.n_heads} heads vs the model's own ({check.dtype}): max |difference| "
        f"{check.weights_max_abs_diff:.1e} (≤ {check.weights_tolerance:.0e}), output "
        f"{check.output_max_abs_diff:.1e} (≤ {check.output_tolerance:.0e}){note}."
        + ("" if check.dtype == "float32" else f" {check.dtype} keeps fewer significant bits than float32.")
    )
    (st.success if check.passed else st.error)(plain(text), icon="✅" if check.passed else "🚫")


def step_by_step(walk: Walkthrough, head: int, presenter: bool, model: str, sentence: str) -> None:
    """Previous/next through the steps; each a labelled matrix and one sentence."""
    shown = steps(walk, head)
    index = min(st.session_state.get("learn_step", 0), len(shown) - 1)
    back, where, forward = st.columns([1.3, 4, 1.3], vertical_alignment="center")
    back.button(
        "◀ Previous",
        key="learn_prev",
        disabled=index == 0,
        on_click=go_to,
        args=(index - 1,),
        width="stretch",
    )
    forward.button(
        "Next ▶",
        key="learn_next",
        disabled=index == len(shown) - 1,
        on_click=go_to,
        args=(index + 1,),
        width="stretch",
    )
    step = shown[index]
    where.subheader(f"Step {index + 1} of {len(shown)}: {step.title}")
    st.markdown(plain(step.explanation))
    if step.key == "softmax" and not predict_then_reveal(walk, head):
        return
    columns = st.columns(len(step.matrices))
    for column, matrix in zip(columns, step.matrices):
        column.plotly_chart(
            learn_figures.step_matrix(matrix, presenter),
            key=f"learn_m_{step.key}_{matrix.name}",
            config={"displayModeBar": False},
        )
    if not presenter and any(m.values.shape[1] > learn_figures.MAX_TEXT_COLUMNS for m in step.matrices):  # no hover on a projector
        st.caption("Too many columns to print every number: hover a cell to read it.")
    if step.key == "softmax":
        reveal_answer(walk, head)
    if step.key == "scale" and st.toggle(
        "Show why: softmax saturation as d_k grows",
        key="learn_why",
        help="Random queries and keys: the bigger d_k, the larger raw scores get.",
    ):
        st.plotly_chart(learn_figures.saturation_figure(lessons.saturation(), walk.head_dim, presenter))
    if step.key == "output" and not walk.rotary:
        st.caption("The same numbers come out of attnviz.learn.variants.multi_head with these matrices (tested).")
    if step.key == "output" and walk.rotary:
        model_check(model, sentence, walk.mask_choice, walk)


def flash(walk: Walkthrough, head: int, presenter: bool) -> None:
    """Online softmax drawn tile by tile, equal to the full softmax, with the memory it saves."""
    n = len(walk.tokens)
    st.markdown(
        "FlashAttention never builds the n × n score matrix: it reads keys tile by tile, keeping for each "
        "query a running maximum m and sum ℓ, and rescales what it has so far when m grows."
    )
    block_col, tile_col = st.columns(2)
    block = (
        2
        if presenter
        else block_col.slider(
            "Keys per tile",
            1,
            max(n, 2),
            min(2, n),
            key="learn_block",
            help="FlashAttention's tile size (on a GPU, what fits in fast on-chip memory).",
        )
    )
    g = walk.kv_head(head)
    q, k, v = (torch.tensor(a) for a in (walk.q[head], walk.k[g], walk.v[g]))
    scale = walk.scale / walk.temperature
    output, states = variants.online_softmax_attention(q, k, v, block, walk.mask, scale)
    tile = len(states)
    if len(states) > 1:
        tile = tile_col.slider(
            "Tile",
            1,
            len(states),
            len(states),
            key="learn_tile",
            help="Step through the tiles: earlier scores are already folded into m and ℓ.",
        )
    st.plotly_chart(learn_figures.tiles_figure(states, tile, walk.tokens, presenter), key="learn_tiles")
    state = states[tile - 1]
    running = pd.DataFrame(
        {
            "query": [visible_text(t) for t in walk.tokens],
            "running max m": state.running_max.numpy(),
            "running sum ℓ": state.running_sum.numpy(),
        }
    )
    st.dataframe(running, hide_index=True)
    full, _ = variants.scaled_dot_product(q, k, v, walk.mask, scale)
    left, right, far = st.columns(3)
    left.metric(
        "max |online − full softmax| output",
        f"{float((output - full).abs().max()):.1e}",
        help="After the last tile the online result equals ordinary softmax attention.",
    )
    right.metric("Full score matrix", f"{4 * n * n} bytes", help="n × n float32 scores of one head.")
    far.metric(
        "At 32,768 tokens",
        f"{4 * 32768**2 / 2**30:.0f} GiB per head",
        help="What one head's full float32 score matrix would need; tiles need n × tile.",
    )


def variants_section(sentence: str, model: str, presenter: bool) -> None:
    """Self vs cross attention, MHA/GQA/MQA with KV-cache sizes, sparse patterns, RoPE vs sinusoidal."""
    st.subheader("Self-attention vs cross-attention")
    st.markdown(
        plain(
            f"Self-attention: the sentence reads itself. Cross-attention (translation): the same toy heads "
            f"read another sentence, '{CROSS_SOURCE}', whose tokens give the keys and values."
        )
    )
    words = " ".join(sentence.split()[:MAX_TOY_WORDS])  # the toy's own word limit, whatever the source
    self_attention = lessons.toy_cross_attention(words, words)
    cross = lessons.toy_cross_attention(words, CROSS_SOURCE)
    left, right = st.columns(2)
    for column, result, title in ((left, self_attention, "self"), (right, cross, "cross")):
        figure = attention_heatmap(
            result.weights[0], result.queries, result.keys, title=f"{title} (toy head 0)"
        )
        column.plotly_chart(learn_figures.readable(figure, presenter, 380), key=f"learn_{title}")
    st.subheader("Multi-head, grouped-query, multi-query")
    loaded = get_model(model)
    if loaded is not None:
        info = loaded.info
        head_dim = info.d_model // info.n_heads
        tokens = (
            4096
            if presenter
            else st.number_input("Tokens in the KV cache", 1, 131072, 4096, step=1024, key="learn_kv_tokens")
        )
        rows = lessons.kv_cache_layouts(info.n_layers, info.n_heads, info.n_kv_heads, head_dim, int(tokens))
        table = pd.DataFrame(
            {
                "layout": [r.layout for r in rows],
                "K/V heads": [r.n_kv_heads for r in rows],
                "KV cache (MB, 16-bit)": [round(r.bytes / 1e6, 1) for r in rows],
                "saved vs MHA": [f"{1 - r.bytes / rows[0].bytes:.0%}" for r in rows],
            }
        )
        st.markdown(
            plain(
                f"{info.name}: {info.n_layers} layers, {info.n_heads} query heads of {head_dim} dimensions, "
                f"{int(tokens)} tokens. Query head h reads key/value head h // (query heads / K/V heads)."
            )
        )
        st.dataframe(table, hide_index=True)
    st.subheader("Local and strided sparse attention")
    n = 32
    left, right = st.columns(2)
    for column, kind in zip((left, right), ("sliding window", "strided")):
        allowed = lessons.sparse_pattern(kind, n)
        kept = masks.mask_stats(allowed).kept
        labels = [str(i) for i in range(n)]
        column.plotly_chart(
            learn_figures.readable(
                mask_heatmap(allowed, labels, labels, title=f"{kind}: {kept} of {n * n} scores"),
                presenter,
                420,
            ),
            key=f"learn_{kind}",
        )
    st.subheader("Positions: RoPE vs sinusoidal")
    st.plotly_chart(
        learn_figures.position_figure(lessons.position_similarity(), presenter), key="learn_positions"
    )


def cost_section(presenter: bool) -> None:
    """Full vs sliding window vs strided attention, measured live for a few lengths."""
    st.markdown(
        "One head's attention timed on this machine: full attention computes every score (n²); "
        "a √n sliding window or √n strided pattern computes only the kept ones (n√n)."
    )
    if st.button(
        "Measure on this machine",
        key="learn_measure",
        help="A few seconds: 4 lengths × 3 kinds, best of 7 runs each.",
    ):
        bar = st.progress(0.0, text="Measuring…")
        st.session_state.learn_cost = lessons.measure_cost(
            progress=lambda done: bar.progress(done, text="Measuring…")
        )
        bar.empty()
    cost = st.session_state.get("learn_cost")
    if cost is None:
        st.info("Press the button to measure.")
        return
    st.plotly_chart(learn_figures.cost_figure(cost, presenter), key="learn_cost_chart")
    st.caption(
        "Memory is exact (the score matrix each one allocates). Times are one live run on a shared machine, so they "
        "are noisy; and dense matrix products are so well optimised that gathering sparse keys only pays off at "
        "long lengths or with dedicated kernels."
    )
    table = pd.DataFrame(cost.seconds * 1000, index=cost.kinds, columns=[f"n={n} (ms)" for n in cost.lengths])
    st.dataframe(table)


model = model_picker()
presenter = bool(st.session_state.get("learn_presenter"))
if presenter:
    st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
else:
    st.title("Learn: attention step by step")
# On a projector the settings fold away, so each step fits 1280×720 without scrolling.
settings = st.expander("Sentence and settings", expanded=False) if presenter else st.container()
with settings:
    sentence_col, source_col = st.columns([3, 2])
    sentence = sentence_col.text_input(
        "Sentence",
        DEFAULT_SENTENCE,
        max_chars=MAX_CHARS,
        key="learn_sentence",
        help=f"Short: the toy takes {MAX_TOY_WORDS} words, the model {MAX_MODEL_TOKENS} tokens.",
    ).strip()
    source = source_col.selectbox(
        "Numbers from",
        SOURCES,
        key="learn_source",
        help="The toy has small readable numbers; the model shows its real first layer.",
    )
    mask_col, scale_col, temp_col, head_col = st.columns([2, 2, 2, 1], vertical_alignment="bottom")
    mask = mask_col.selectbox(
        "Mask",
        MASK_CHOICES,
        index=1,
        key="learn_mask",
        help="Which keys each query may read: padding adds two [pad] tokens nobody reads.",
    )
    scaled = scale_col.toggle(
        "Scale by 1/√d_k",
        True,
        key="learn_scaled",
        help="Turn off to see softmax saturate: one key takes almost all the weight.",
    )
    temperature = temp_col.slider(
        "Temperature",
        0.25,
        4.0,
        1.0,
        0.25,
        key="learn_temperature",
        help="Scores are divided by it: low sharpens softmax, high flattens it.",
    )
if not sentence:
    error("The sentence is empty: type a few words.")
    st.stop()
walk = walkthrough(source, model, sentence, mask, scaled, temperature)
head = (
    0
    if presenter
    else head_col.selectbox("Head", range(walk.n_heads), key="learn_head", help="Query heads of this layer.")
)
if len(walk.tokens) - walk.padding == 1:
    st.info(
        "With one token, attention has only itself to read: every weight is 1. Add words to see a choice."
    )
section_col, presenter_col = st.columns([4, 1], vertical_alignment="center")
section = section_col.radio(
    "Section", SECTIONS, horizontal=True, key="learn_section", label_visibility="collapsed"
)
presenter_col.toggle(
    "Presenter mode",
    key="learn_presenter",
    help="Large fonts, high contrast, fewer controls: for a projector (1280×720).",
)
if section == SECTIONS[0]:
    step_by_step(walk, head, presenter, model, sentence)
elif section == SECTIONS[1]:
    flash(walk, head, presenter)
elif section == SECTIONS[2]:
    variants_section(sentence, model, presenter)
else:
    cost_section(presenter)
if not presenter:
    st.caption(
        f"Scale used: {walk.scale:.4g} · heads {walk.n_heads} · key/value heads {walk.n_kv_heads} · "
        f"d_k {walk.head_dim} · {math.prod(walk.weights.shape)} weights"
    )
