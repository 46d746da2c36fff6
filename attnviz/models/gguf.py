"""GGUF conversion: the SmolLM2 built-in ships quantized; it is de-quantized once and saved as safetensors.

``save_pretrained`` refuses a de-quantized model, so the weights are written with
``safetensors.torch.save_model`` next to the config and tokenizer (first load ~15 s, cached ~1 s).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def prepare_smollm2(package_dir: Path, target: Path, progress: Callable[[str], None]) -> None:
    """De-quantize the shipped GGUF and save it as safetensors (save_pretrained refuses it)."""
    from safetensors.torch import save_model

    progress("De-quantizing SmolLM2 GGUF (first use only, ~15 s)")
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    progress("Saving safetensors cache")
    save_model(model, str(target / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(target)
    model.generation_config.save_pretrained(target)
    tokenizer.save_pretrained(target)
