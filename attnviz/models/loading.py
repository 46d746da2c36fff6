"""Model loading: built-in offline models, local folders, and hub ids when allowed.

``trust_remote_code`` is never enabled; the rules a model must pass before any weight is read are
in :mod:`attnviz.models.safety`, the built-ins in :mod:`attnviz.models.registry`.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from attnviz import hooks
from attnviz.models import devices
from attnviz.models.downloads import check_download_bytes, check_download_count
from attnviz.models.errors import ModelLoadError
from attnviz.models.fingerprint import fingerprint as model_fingerprint
from attnviz.models.registry import BUILTINS, builtin_folder
from attnviz.models.safety import (
    allowed_folder,
    canonical_name,
    check_local_folder,
    check_name,
    check_size,
    is_hub_id,
    parameter_bytes,
    unknown_model,
)

__all__ = ["Kind", "LoadedModel", "ModelInfo", "ModelLoadError", "load_from_folder_or_hub", "load_model", "model_name"]

Kind = Literal["decoder", "encoder", "encoder-decoder"]
Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelInfo:
    """Facts the UI needs before running anything."""

    name: str
    kind: Kind
    family: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    vocab_size: int
    has_chat_template: bool


@dataclass(eq=False)
class LoadedModel:
    """A model ready for tracing: weights in eval mode with our attention attached.

    ``lock`` serialises use of the shared model and tokenizer across threads
    (fast tokenizers are not re-entrant; see NOTES on Streamlit's shared resources).
    """

    model: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase | None
    info: ModelInfo
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def kind(self) -> Kind:
        return self.info.kind

    @property
    def n_layers(self) -> int:
        return self.info.n_layers

    @property
    def n_heads(self) -> int:
        return self.info.n_heads

    @functools.cached_property
    def fingerprint(self) -> str:
        """Hash of what results computed with this model depend on (see :mod:`attnviz.models.fingerprint`)."""
        return model_fingerprint(self.model, self.tokenizer, self.lock)

    @property
    def device(self) -> torch.device:
        """Where inputs go: the device of the first weights (the input embeddings when spread)."""
        return self.model.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.dtype

    @property
    def device_label(self) -> str:
        """Device and dtype in words, for the sidebar and the CLI (e.g. ``cpu · float32``)."""
        return devices.describe(self.model)

    @property
    def main_stack(self) -> Literal["decoder", "encoder"]:
        """The self-attention stack that reads the prompt: the decoder's, else the encoder's."""
        return "decoder" if self.kind == "decoder" else "encoder"

    @property
    def main_layers(self) -> tuple[int, ...]:
        """The layers of the main stack: what a summary covers, known before any pass."""
        return hooks.stack_layers(self.model)[self.main_stack]


def _kind_of(config: transformers.PretrainedConfig) -> Kind:
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder"
    architectures = config.architectures or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "decoder"
    if not architectures and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        # No architectures list: decoder-only families (gpt2, llama, ...) have no masked-LM head.
        if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
            return "decoder"
    return "encoder"


def _model_class(kind: Kind) -> type:
    if kind == "encoder-decoder":
        return AutoModelForSeq2SeqLM
    if kind == "decoder":
        return AutoModelForCausalLM
    return AutoModel


def _info(name: str, model: transformers.PreTrainedModel, tokenizer: object, kind: Kind) -> ModelInfo:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n_heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "num_heads", 0))
    n_layers = int(getattr(config, "num_hidden_layers", 0) or getattr(config, "num_layers", 0))
    return ModelInfo(
        name=name,
        kind=kind,
        family=model.config.model_type,
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=int(getattr(config, "num_key_value_heads", None) or n_heads),
        d_model=int(getattr(config, "hidden_size", 0) or getattr(config, "d_model", 0)),
        vocab_size=int(getattr(config, "vocab_size", 0) or 0),
        has_chat_template=bool(getattr(tokenizer, "chat_template", None)),
    )


def _load_tokenizer(source: str) -> transformers.PreTrainedTokenizerBase | None:
    """The model's tokenizer, or None for models without one (e.g. ViT takes pixels)."""
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, TypeError):
        return None


def load_from_folder_or_hub(
    source: str, name: str, place: devices.Placement | None = None, hub: bool = False
) -> LoadedModel:
    """Load a Hugging Face folder or hub id safely onto ``place`` (CPU float32 if None) and attach our attention.

    ``hub``: ``source`` is a hub id, whose weights may be downloaded (within the download bounds).
    """
    place = place or devices.placement("cpu")
    # Errors from the files never reach the message: they may hold resolved paths or list files.
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except OSError as error:
        raise unknown_model(name) from error
    except ValueError as error:
        if "trust_remote_code" in str(error) or "custom code" in str(error):
            raise ModelLoadError(
                f"'{name}' needs custom code from its repository (trust_remote_code); attnviz never runs it."
            ) from error
        raise ModelLoadError(f"Could not read the configuration of '{name}' (config.json).") from error
    if getattr(config, "auto_map", None):
        raise ModelLoadError(
            f"'{name}' declares custom model code (auto_map); attnviz never enables trust_remote_code."
        )
    kind = _kind_of(config)
    size = parameter_bytes(config, _model_class(kind))
    check_size(size, name)
    if hub:
        check_download_bytes(name, size)
    try:
        model = _model_class(kind).from_pretrained(
            source, trust_remote_code=False, use_safetensors=True, dtype=place.dtype,
            **({"device_map": place.device_map} if place.device_map else {}),
        )  # fmt: skip
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Could not load the safetensors weights of '{name}'.") from error
    return wrap(model, _load_tokenizer(source), name)


def wrap(
    model: transformers.PreTrainedModel, tokenizer: transformers.PreTrainedTokenizerBase | None, name: str
) -> LoadedModel:
    """A model already in memory, put in eval mode with our attention attached (the loaders' last step;
    benchmarks use it for random weights of real shapes built straight on a GPU)."""
    kind = _kind_of(model.config)
    model.eval()
    try:
        hooks.attach(model, encoder_only=kind == "encoder")
    except (ValueError, NotImplementedError) as error:
        raise ModelLoadError(
            f"'{name}' ({model.config.model_type}) does not route attention through transformers' attention "
            f"interface, so attnviz cannot record it exactly: {error}"
        ) from error
    return LoadedModel(model=model, tokenizer=tokenizer, info=_info(name, model, tokenizer, kind))


def model_name(name_or_path: str) -> str:
    """The name a model is loaded and cached under: checked for length and control characters, paths normalised."""
    check_name(name_or_path.strip())
    return canonical_name(name_or_path)


def load_model(
    name_or_path: str, progress: Progress | None = None, device: str = "auto", dtype: str = "auto"
) -> LoadedModel:
    """Load a built-in name, a local folder under ``ATTNVIZ_MODEL_DIRS``, or a Hugging Face hub id onto ``device``
    (hub ids come from the local cache, or are downloaded with ``ATTNVIZ_ONLINE=1``).

    ``device``: auto (``ATTNVIZ_DEVICE`` if set, else CUDA when available, else CPU), cpu, cuda or cuda:N.
    ``dtype``: auto (float32 on the CPU, bfloat16 on GPUs that support it), float32, bfloat16 or float16.
    """
    report = progress or (lambda message: None)
    name = model_name(name_or_path)
    try:
        place = devices.placement(device, dtype)
    except devices.DeviceError as error:
        raise ModelLoadError(str(error)) from None
    if name in BUILTINS:
        folder = builtin_folder(name, report)
        report(f"Loading {name}")
        return load_from_folder_or_hub(str(folder), name, place)
    folder = allowed_folder(name)  # the roots are checked before the filesystem is asked about the name
    if folder is not None and os.path.isdir(folder):  # False, never an error, when it cannot be read
        check_local_folder(folder, name)
        report(f"Loading {name}")
        return load_from_folder_or_hub(str(folder), name, place)
    if not is_hub_id(name):
        raise unknown_model(name)
    check_download_count(name)
    report(f"Loading {name} from the Hugging Face hub cache")
    return load_from_folder_or_hub(name, name, place, hub=True)
