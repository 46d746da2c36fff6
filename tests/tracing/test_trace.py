"""Recorded weights equal transformers' eager ``output_attentions`` and logits are unchanged."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import transformers as tf

import attnviz
from attnviz.hooks import Site
from attnviz.models.loading import LoadedModel, ModelLoadError
from attnviz.tracing.forward import pass_threads
from attnviz.tracing.inputs import PromptError
from attnviz.tracing.trace import record

TOLERANCE = 1e-5
TEXT_FAMILIES = [
    "gpt2", "llama", "gemma2", "mistral", "qwen2", "phi3", "gpt_neox", "opt",
    "bert", "roberta", "distilbert", "bart", "marian", "t5",
]  # fmt: skip


def eager_twin(loaded: LoadedModel) -> tf.PreTrainedModel:
    """The same weights loaded with transformers' own eager attention."""
    model_class = type(loaded.model)
    return model_class.from_pretrained(loaded.model.name_or_path, attn_implementation="eager").eval()


def padded_batch(loaded: LoadedModel, lengths: tuple[int, ...] = (12, 7)) -> dict[str, torch.Tensor]:
    """Random token ids, right-padded, with an attention mask: batch > 1 with padding."""
    generator = torch.Generator().manual_seed(1)
    vocab = loaded.info.vocab_size
    width = max(lengths)
    ids = torch.randint(5, vocab, (len(lengths), width), generator=generator)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    inputs = {"input_ids": ids, "attention_mask": mask}
    if loaded.kind == "encoder-decoder":
        inputs["decoder_input_ids"] = torch.randint(5, vocab, (len(lengths), 5), generator=generator)
    return inputs


def eager_weights(outputs: tf.utils.ModelOutput, kind: str) -> dict[str, torch.Tensor]:
    """Eager's attentions per stack as [batch, layers, heads, q, k]."""
    stacked = lambda items: torch.stack(items, dim=1)  # noqa: E731
    if kind == "encoder-decoder":
        return {
            "encoder": stacked(outputs.encoder_attentions),
            "decoder": stacked(outputs.decoder_attentions),
            "cross": stacked(outputs.cross_attentions),
        }
    return {"decoder" if kind == "decoder" else "encoder": stacked(outputs.attentions)}


def assert_matches_eager(loaded: LoadedModel, inputs: dict[str, torch.Tensor], **options: int) -> None:
    eager = eager_twin(loaded)
    # On the threads our forward uses for these inputs: on another count the CPU's matmuls split their sums
    # differently, and 30 layers of SmolLM2 then drift by ~4e-5 in the logits (seen on one CPU).
    with torch.no_grad(), pass_threads(loaded, inputs):
        reference = eager(**inputs, output_attentions=True)
    outputs, recording = record(loaded, inputs, **options)
    expected = eager_weights(reference, loaded.kind)
    assert set(recording.weights) == set(expected)
    for stack, weights in expected.items():
        assert recording.weights[stack].shape == tuple(weights.shape), stack
        np.testing.assert_allclose(recording.weights[stack], weights.numpy(), atol=TOLERANCE, rtol=0)
    out_name = "logits" if hasattr(reference, "logits") else "last_hidden_state"
    np.testing.assert_allclose(
        getattr(outputs, out_name).numpy(), getattr(reference, out_name).numpy(), atol=TOLERANCE, rtol=0
    )


@pytest.mark.parametrize("family", TEXT_FAMILIES)
def test_family_matches_eager_with_padding(tiny, family: str) -> None:
    assert_matches_eager(tiny(family), padded_batch(tiny(family)))


@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt2", "bert", "t5"])
def test_queries_in_chunks_match_eager(tiny, family: str) -> None:
    """One query row per chunk (with keys trimmed to what each row sees) still equals eager."""
    assert_matches_eager(tiny(family), padded_batch(tiny(family)), chunk_bytes=1)


def test_each_chunks_key_width_is_found_once_per_forward(tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every layer shares the model's mask, so a chunk's last visible key is computed for the first layer only."""
    loaded = tiny("llama")
    inputs = padded_batch(loaded)
    calls = []
    real = attnviz.hooks._last_key
    monkeypatch.setattr(attnviz.hooks, "_last_key", lambda *args: calls.append(1) or real(*args))
    record(loaded, inputs, chunk_bytes=1)
    assert len(calls) == inputs["input_ids"].shape[1] and loaded.n_layers > 1


def test_vit_matches_eager(tiny) -> None:
    loaded = tiny("vit")
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert loaded.tokenizer is None
    assert_matches_eager(loaded, {"pixel_values": pixels})


def test_smollm2_matches_eager_exactly(smollm2) -> None:
    ids = smollm2.tokenizer("Attention is all you need, said the paper; the cat sat.", return_tensors="pt")
    assert_matches_eager(smollm2, dict(ids))


def test_minilm_matches_eager(minilm) -> None:
    assert_matches_eager(minilm, padded_batch(minilm, (10, 4)))


def test_sliding_window_really_masks(tiny) -> None:
    """Gemma 2's local layers (window 4) give exactly zero weight beyond the window."""
    loaded = tiny("gemma2")
    result = attnviz.trace(loaded, "one two three four five six seven eight nine ten")
    sliding_layers = [i for i, t in enumerate(loaded.model.config.layer_types) if t == "sliding_attention"]
    assert sliding_layers
    weights = result.attention[sliding_layers[0]]
    n = result.n_tokens
    query, key = np.tril_indices(n, k=-4)
    assert n > 5 and np.all(weights[:, query, key] == 0.0)
    assert np.all(weights[:, np.triu_indices(n, k=1)[0], np.triu_indices(n, k=1)[1]] == 0.0)


def test_trace_text_decoder(smollm2) -> None:
    result = attnviz.trace(smollm2, "The cat sat on the mat.")
    assert result.tokens[:3] == ("The", " cat", " sat")
    assert result.attention.shape == (30, 9, result.n_tokens, result.n_tokens)
    np.testing.assert_allclose(result.attention.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(result.attention[0, 0], k=1) == 0)


def test_trace_chat_marks_special_tokens(smollm2) -> None:
    result = attnviz.trace(smollm2, messages=[{"role": "user", "content": "Hi <b>there</b>"}])
    assert result.tokens[0] == "<|im_start|>" and result.special[0]
    assert "".join(result.tokens).count("<b>") == 1
    assert not any(result.special[i] for i, t in enumerate(result.tokens) if t.strip() == "there")


def test_wordpiece_and_special_tokens(minilm) -> None:
    result = attnviz.trace(minilm, "Tokenization happens")
    assert result.tokens[0] == "[CLS]" and result.special[0] and result.special[-1]
    assert any(t.startswith("##") for t in result.tokens)
    assert result.attention.shape == (6, 12, result.n_tokens, result.n_tokens)


def test_layers_heads_and_float16_reduce_what_is_kept(smollm2) -> None:
    full = attnviz.trace(smollm2, "Small memory please.")
    part = attnviz.trace(smollm2, "Small memory please.", layers=[3, 7], heads=[0, 8], float16=True)
    assert part.attention.dtype == np.float16
    assert part.layers == (3, 7) and part.heads == (0, 8)
    np.testing.assert_allclose(part.attention, full.attention[[3, 7]][:, [0, 8]], atol=1e-3)


def test_trace_batch_crops_padding(tiny) -> None:
    """Bidirectional encoder, right padding: each prompt gets exactly its unpadded trace."""
    loaded = tiny("bert")
    short, long = attnviz.trace_batch(loaded, ["a short one", "a much longer prompt than the first one"])
    alone = attnviz.trace(loaded, "a short one")
    assert short.tokens == alone.tokens and long.n_tokens > short.n_tokens
    np.testing.assert_allclose(short.attention, alone.attention, atol=TOLERANCE)


def test_left_padding_is_cropped_away(smollm2) -> None:
    """Left padding (as decoders batch): pad keys are dropped and each prompt gets its unpadded trace.

    Left padding shifts a prompt's positions; RoPE scores depend only on relative positions, so the
    weights still equal the prompt traced alone (to float32 rounding)."""
    prompts = ["Hi", "A longer prompt with more tokens"]
    smollm2.tokenizer.padding_side = "left"
    try:
        short, long = attnviz.trace_batch(smollm2, prompts)
    finally:
        smollm2.tokenizer.padding_side = "right"
    assert short.attention.shape[-1] == short.n_tokens < long.n_tokens
    for padded, prompt in zip((short, long), prompts, strict=True):
        alone = attnviz.trace(smollm2, prompt)
        assert padded.tokens == alone.tokens
        np.testing.assert_allclose(padded.attention, alone.attention, atol=1e-4, rtol=0, err_msg=prompt)


def test_encoder_decoder_trace_has_three_stacks(tiny) -> None:
    loaded = tiny("t5")
    result = attnviz.trace(loaded, "translate this sentence", target="traduire")
    t, n = len(result.target_tokens), result.n_tokens
    assert result.decoder_attention.shape == (2, 4, t, t)
    assert result.cross_attention.shape == (2, 4, t, n)
    assert result.attention.shape == (2, 4, n, n)
    assert np.all(np.triu(result.decoder_attention[0, 0], k=1) == 0)


def test_head_ablation_zeroes_the_head_and_changes_output(smollm2) -> None:
    inputs = dict(smollm2.tokenizer("The capital of France is", return_tensors="pt"))
    base, _ = record(smollm2, inputs, layers=[])
    ablated, recording = record(smollm2, inputs, layers=[5], ablate={Site("decoder", 5): (0, 1, 2)})
    assert np.all(recording.weights["decoder"][0, 0, :3] == 0)
    assert not torch.allclose(base.logits, ablated.logits)


@pytest.mark.parametrize("prompt", ["", "   \n\t "])
def test_empty_prompt_is_refused(smollm2, prompt: str) -> None:
    with pytest.raises(PromptError, match="empty"):
        attnviz.trace(smollm2, prompt)


def test_huge_prompt_is_refused(smollm2) -> None:
    with pytest.raises(PromptError, match="at most 4096"):
        attnviz.trace(smollm2, "word " * 5000)


def test_odd_unicode_round_trips(smollm2) -> None:
    """Characters split over byte-level tokens come back whole, and their weights are eager's.

    A split character shows on each of its pieces (``🤖⟨1/3⟩`` ``🤖⟨2/3⟩`` ``🤖⟨3/3⟩``); keeping its
    first piece and dropping the rest gives the text back exactly."""
    text = "naïve café 🤖 ∑ 中文 \u200b e\u0301"
    result = attnviz.trace(smollm2, text)
    assert smollm2.tokenizer.decode(result.input_ids.tolist()) == text
    pieces = [re.fullmatch(r"(.*?)(?:⟨(\d+)/\d+⟩)?", token, re.DOTALL).groups() for token in result.tokens]
    assert "".join(shown for shown, piece in pieces if piece in (None, "1")) == text
    assert sum(piece is not None for _, piece in pieces) >= 8  # 🤖, ∑, zero-width space, accent: split
    eager = eager_twin(smollm2)
    ids = {"input_ids": torch.as_tensor(result.input_ids)[None]}
    with torch.no_grad(), pass_threads(smollm2, ids):  # on the threads our pass ran on
        reference = eager(**ids, output_attentions=True).attentions
    np.testing.assert_allclose(result.attention, torch.stack(reference, 1)[0].numpy(), atol=TOLERANCE, rtol=0)


def test_architecture_outside_the_interface_is_refused(tiny_model_dir) -> None:
    with pytest.raises(ModelLoadError, match="attention interface"):
        attnviz.load_model(str(tiny_model_dir("bloom")))


def test_recording_one_layer_keeps_the_output(smollm2) -> None:
    """Unrecorded layers take the fused SDPA kernel; the output stays eager's to display precision."""
    inputs = dict(smollm2.tokenizer("One layer only, please, and quickly.", return_tensors="pt"))
    everything, _ = record(smollm2, inputs)
    one, recording = record(smollm2, inputs, layers=[4])
    assert recording.layers == {"decoder": (4,)}
    np.testing.assert_allclose(one.logits.numpy(), everything.logits.numpy(), atol=1e-4, rtol=0)


def test_last_logits_only_matches_the_full_last_row(smollm2) -> None:
    inputs = dict(smollm2.tokenizer("Only the next token matters here", return_tensors="pt"))
    full, _ = record(smollm2, inputs, layers=[])
    last, _ = record(smollm2, inputs, layers=[], last_logits_only=True)
    assert last.logits.shape[1] == 1
    # One row through lm_head is a different matmul shape from all rows: float32 rounding only.
    np.testing.assert_allclose(last.logits[0, -1].numpy(), full.logits[0, -1].numpy(), rtol=1e-5, atol=1e-5)


def test_causal_mask_is_skipped_exactly_where_sdpa_skips_it() -> None:
    """Unpadded causal prompts get no mask (SDPA's is_causal kernel); padded ones get eager's mask."""
    from transformers.masking_utils import eager_mask

    from attnviz.hooks import attnviz_mask

    assert attnviz_mask(batch_size=1, q_length=5, kv_length=5, allow_is_causal_skip=True) is None
    padding = torch.tensor([[False, True, True, True, True]])  # models pass the 2-D mask as bool
    ours = attnviz_mask(batch_size=1, q_length=5, kv_length=5, attention_mask=padding, allow_is_causal_skip=True)
    assert torch.equal(ours, eager_mask(batch_size=1, q_length=5, kv_length=5, attention_mask=padding))
