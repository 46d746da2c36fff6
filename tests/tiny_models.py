"""Tiny random models of each architecture family, saved with safetensors.

Decoders and encoder-decoders borrow SmolLM2's tokenizer, encoders MiniLM's, so
text can be traced end to end; weights are random (seeded) and small.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import transformers as tf

from attnviz.models.registry import builtin_folder

SMOL_VOCAB = 49152
BERT_VOCAB = 30522

# family -> (model class, config factory, tokenizer source: built-in name or None)
FAMILIES: dict[str, tuple[type, Callable[[], tf.PretrainedConfig], str | None]] = {
    "gpt2": (
        tf.GPT2LMHeadModel,
        lambda: tf.GPT2Config(n_layer=2, n_head=4, n_embd=32, vocab_size=SMOL_VOCAB, n_positions=256),
        "smollm2-135m-instruct",
    ),
    "llama": (
        tf.LlamaForCausalLM,
        lambda: tf.LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=SMOL_VOCAB, max_position_embeddings=256,
        ),
        "smollm2-135m-instruct",
    ),
    "gemma2": (
        tf.Gemma2ForCausalLM,
        lambda: tf.Gemma2Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, vocab_size=SMOL_VOCAB, sliding_window=4,
            attn_logit_softcapping=1.5, final_logit_softcapping=30.0, query_pre_attn_scalar=8,
            max_position_embeddings=256,
        ),
        "smollm2-135m-instruct",
    ),
    "mistral": (
        tf.MistralForCausalLM,
        lambda: tf.MistralConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=1, vocab_size=SMOL_VOCAB, sliding_window=4, max_position_embeddings=256,
        ),
        "smollm2-135m-instruct",
    ),
    "qwen2": (
        tf.Qwen2ForCausalLM,
        lambda: tf.Qwen2Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=SMOL_VOCAB, max_position_embeddings=256,
        ),
        "smollm2-135m-instruct",
    ),
    "phi3": (
        tf.Phi3ForCausalLM,
        lambda: tf.Phi3Config(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=SMOL_VOCAB, max_position_embeddings=256, pad_token_id=0,
        ),
        "smollm2-135m-instruct",
    ),
    "gpt_neox": (
        tf.GPTNeoXForCausalLM,
        lambda: tf.GPTNeoXConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            vocab_size=SMOL_VOCAB, max_position_embeddings=256,
        ),
        "smollm2-135m-instruct",
    ),
    "opt": (
        tf.OPTForCausalLM,
        lambda: tf.OPTConfig(
            hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4, word_embed_proj_dim=32,
            vocab_size=SMOL_VOCAB, max_position_embeddings=256,
        ),
        "smollm2-135m-instruct",
    ),
    "bert": (
        tf.BertModel,
        lambda: tf.BertConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=BERT_VOCAB
        ),
        "minilm-l6",
    ),
    "roberta": (
        tf.RobertaModel,
        lambda: tf.RobertaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            vocab_size=BERT_VOCAB, max_position_embeddings=300, pad_token_id=0,
        ),
        "minilm-l6",
    ),
    "distilbert": (
        tf.DistilBertModel,
        lambda: tf.DistilBertConfig(dim=32, hidden_dim=64, n_layers=2, n_heads=4, vocab_size=BERT_VOCAB),
        "minilm-l6",
    ),
    "bart": (
        tf.BartForConditionalGeneration,
        lambda: tf.BartConfig(
            d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=SMOL_VOCAB, max_position_embeddings=256,
            pad_token_id=2, bos_token_id=1, eos_token_id=2, decoder_start_token_id=2,
        ),
        "smollm2-135m-instruct",
    ),
    "marian": (
        tf.MarianMTModel,
        lambda: tf.MarianConfig(
            d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=SMOL_VOCAB, max_position_embeddings=256,
            pad_token_id=2, eos_token_id=2, decoder_start_token_id=2,
        ),
        "smollm2-135m-instruct",
    ),
    "t5": (
        tf.T5ForConditionalGeneration,
        lambda: tf.T5Config(
            d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
            vocab_size=SMOL_VOCAB, relative_attention_num_buckets=8, pad_token_id=2, eos_token_id=2,
            decoder_start_token_id=2,
        ),
        "smollm2-135m-instruct",
    ),
    "vit": (
        tf.ViTModel,
        lambda: tf.ViTConfig(
            image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4,
        ),
        None,
    ),
    "bloom": (
        tf.BloomForCausalLM,
        lambda: tf.BloomConfig(hidden_size=32, n_layer=2, n_head=4, vocab_size=SMOL_VOCAB),
        "smollm2-135m-instruct",
    ),
}


def save_tiny(family: str, folder: Path, tokenizer: tf.PreTrainedTokenizerBase | None = None) -> Path:
    """Create the family's tiny model with seeded random weights and save it (safetensors), with
    ``tokenizer`` if given (a machine without the built-ins, e.g. a GPU), else the family's built-in one."""
    model_class, make_config, tokenizer_source = FAMILIES[family]
    torch.manual_seed(0)
    model = model_class(make_config()).eval()
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is None and tokenizer_source is not None:
        tokenizer = tf.AutoTokenizer.from_pretrained(builtin_folder(tokenizer_source))
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder
