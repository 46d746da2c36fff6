"""Where a model runs: device choice, dtype, and how the weights are placed.

``auto`` means ``ATTNVIZ_DEVICE`` when set, else CUDA when torch sees a GPU, else the CPU.
On a GPU weights load in bfloat16 where the GPU supports it; with more than one GPU,
``auto`` spreads the layers over them with accelerate's ``device_map="auto"``.
On the CPU, a small pass runs on one thread (:func:`cpu_threads_for`).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

DEVICE_ENV = "ATTNVIZ_DEVICE"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# Passes of up to this many tokens run on one CPU thread. Measured on 2 cores (SmolLM2 trace): alone,
# one thread is as fast as two up to about 36 tokens (0.22 s) and 1.2-1.4x slower at 48-64; with another
# process busy on one core (a browser drawing, another session), two threads waited at every parallel
# op for the descheduled one: 1.0 s against one thread's 0.25 s at 36 tokens, 1.9 s against 0.38 s at 64.
SMALL_PASS_TOKENS = 48


class DeviceError(ValueError):
    """A device was asked for that does not exist on this machine."""


@dataclass(frozen=True)
class Placement:
    """How to load weights: ``device`` for inputs, ``dtype``, and the ``device_map`` for from_pretrained."""

    device: torch.device
    dtype: torch.dtype
    device_map: str | None


def resolve(device: str = "auto") -> torch.device:
    """The torch device meant by ``device`` (auto, cpu, cuda, cuda:N); DeviceError if it is not here."""
    asked = device.strip().lower()
    source = "device"
    if asked == "auto":
        env = os.environ.get(DEVICE_ENV, "").strip().lower()
        if env and env != "auto":
            asked, source = env, DEVICE_ENV
        else:
            asked = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(asked)
    except (RuntimeError, ValueError):
        raise DeviceError(f"Unknown {source} '{asked}': use auto, cpu, cuda or cuda:N.") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"The {source} '{asked}' was asked for, but torch sees no CUDA GPU here: use cpu or auto.")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise DeviceError(f"The {source} '{asked}' does not exist: this machine has {torch.cuda.device_count()} GPU(s).")
    elif resolved.type != "cpu":
        raise DeviceError(f"The {source} '{asked}' is not supported: use auto, cpu, cuda or cuda:N.")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype meant by ``dtype``: ``auto`` is float32 on the CPU and bf16 on GPUs that support it."""
    asked = dtype.strip().lower()
    if asked == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else torch.float32
    if asked not in DTYPES:
        raise DeviceError(f"Unknown dtype '{dtype}': use auto, {', '.join(DTYPES)}.")
    return DTYPES[asked]


def placement(device: str = "auto", dtype: str = "auto") -> Placement:
    """Device, dtype and device map for loading: bf16 on GPUs that support it; spread over several GPUs."""
    resolved = resolve(device)
    chosen = resolve_dtype(dtype, resolved)
    if resolved.type == "cpu":
        return Placement(resolved, chosen, None)
    dtype = chosen
    spread = resolved.index is None and torch.cuda.device_count() > 1 and importlib.util.find_spec("accelerate")
    if spread:
        return Placement(torch.device("cuda", 0), dtype, "auto")
    index = resolved.index if resolved.index is not None else torch.cuda.current_device()
    return Placement(torch.device("cuda", index), dtype, f"cuda:{index}")


def describe(model: torch.nn.Module) -> str:
    """e.g. ``cpu · float32``, ``cuda:0 · bfloat16``, or ``cuda:0 + cuda:1 · bfloat16`` for a spread model."""
    spread = getattr(model, "hf_device_map", None)
    devices = sorted({f"cuda:{d}" if isinstance(d, int) else str(d) for d in spread.values()}) if spread else []
    where = " + ".join(devices) if len(devices) > 1 else str(next(model.parameters()).device)
    return f"{where} · {str(next(model.parameters()).dtype).removeprefix('torch.')}"


def stack_across(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack`` of per-layer tensors that may sit on different devices (layers spread by
    ``device_map``), all moved to the first one's device."""
    target = tensors[0].device
    return torch.stack([tensor.to(target) for tensor in tensors])


@contextmanager
def cpu_threads_for(tokens: int | None, device: torch.device) -> Iterator[None]:
    """Run a CPU pass of ``tokens`` tokens (batch included; None: not a token pass) on one thread if it
    is small, else on the threads torch is set to use."""
    before = torch.get_num_threads()
    if device.type != "cpu" or tokens is None or tokens > SMALL_PASS_TOKENS or before == 1:
        yield
        return
    # torch's setting is process-wide: a pass of another model starting meanwhile may also get one thread
    # (slower at worst); passes of one model never overlap (its lock).
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
