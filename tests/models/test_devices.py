"""The device option of load_model, tested where every machine can: on the CPU (and on CUDA where present)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

import attnviz
from attnviz.heads.summary import summarise
from attnviz.models.devices import SMALL_PASS_TOKENS, cpu_threads_for
from attnviz.models.loading import LoadedModel, ModelLoadError
from attnviz.tracing.thumbnails import thumbnail


def test_cpu_device_loads_float32_on_cpu(tiny_model_dir) -> None:
    loaded = attnviz.load_model(str(tiny_model_dir("llama")), device="cpu")
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert loaded.device_label == "cpu · float32"
    assert summarise(loaded, "a b c").device == "cpu · float32"


def test_environment_overrides_auto(tiny_model_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNVIZ_DEVICE", "cpu")
    assert attnviz.load_model(str(tiny_model_dir("llama"))).device_label == "cpu · float32"


@pytest.mark.parametrize("device", ["tpu", "cuda:99", "not a device"])
def test_invalid_device_is_a_clear_load_error(tiny_model_dir, device: str) -> None:
    with pytest.raises(ModelLoadError, match="device"):
        attnviz.load_model(str(tiny_model_dir("llama")), device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_from_the_environment_without_a_gpu_names_the_variable(
    tiny_model_dir, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ATTNVIZ_DEVICE", "cuda")
    with pytest.raises(ModelLoadError, match="ATTNVIZ_DEVICE 'cuda' was asked for, but torch sees no CUDA GPU"):
        attnviz.load_model(str(tiny_model_dir("llama")))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_trace_and_summary_equal_eager_on_the_same_device(tiny_model_dir) -> None:
    """On CUDA, in the dtype load_model picks there: the trace is transformers' eager ``output_attentions``
    on the same GPU, and the summary's thumbnails are those of eager's maps."""
    folder = str(tiny_model_dir("llama"))
    gpu = attnviz.load_model(folder, device="cuda")
    assert gpu.device.type == "cuda"
    eager = type(gpu.model).from_pretrained(folder, attn_implementation="eager", dtype=gpu.dtype)
    eager = eager.to(gpu.device).eval()
    text = "one two three four five six seven eight"
    result = attnviz.trace(gpu, text)
    with torch.no_grad():
        ids = torch.as_tensor(result.input_ids, device=gpu.device)[None]
        expected = torch.stack(eager(ids, output_attentions=True).attentions, 1)[0].float().cpu().numpy()
    tolerance = max(1e-5, 2 * torch.finfo(gpu.dtype).eps)  # two roundings at 1.0 in bf16/fp16; 1e-5 in fp32
    np.testing.assert_allclose(result.attention, expected, atol=tolerance, rtol=0)
    np.testing.assert_allclose(summarise(gpu, text).thumbnails, thumbnail(expected), atol=2 * tolerance, rtol=0)


@pytest.fixture()
def two_threads() -> Iterator[None]:
    """torch on two threads, as the app sets it, for one test; the previous setting back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize(
    ("tokens", "device", "inside"),
    [(SMALL_PASS_TOKENS, "cpu", 1), (SMALL_PASS_TOKENS + 1, "cpu", 2), (None, "cpu", 2), (8, "cuda", 2)],
)
def test_only_a_small_cpu_pass_runs_on_one_thread(
    two_threads: None, tokens: int | None, device: str, inside: int
) -> None:
    with cpu_threads_for(tokens, torch.device(device)):
        seen = torch.get_num_threads()
    assert (seen, torch.get_num_threads()) == (inside, 2)  # and the setting is back afterwards


def test_the_models_forward_sees_one_thread_for_a_short_prompt(tiny, two_threads: None) -> None:
    """Observed inside the real model's forward: a short prompt's pass on one thread, a long one on two."""
    loaded = tiny("llama")
    seen: list[int] = []
    handle = loaded.model.register_forward_pre_hook(lambda *_: seen.append(torch.get_num_threads()))
    try:
        attnviz.trace(loaded, "a b c")
        attnviz.trace(loaded, " ".join(["word"] * (SMALL_PASS_TOKENS + 8)))
    finally:
        handle.remove()
    assert seen == [1, 2]


def _offloaded(folder: str, offload_dir: Path) -> transformers.PreTrainedModel:
    """The tiny llama with its second layer offloaded to disk by accelerate (its weights left on ``meta``)."""
    on_cpu = ("model.embed_tokens", "model.layers.0", "model.norm", "model.rotary_emb", "lm_head")
    placement = dict.fromkeys(on_cpu, "cpu")
    return transformers.AutoModelForCausalLM.from_pretrained(
        folder, device_map={**placement, "model.layers.1": "disk"}, offload_folder=str(offload_dir)
    )


def test_fingerprint_of_a_model_with_offloaded_weights(tiny, tiny_model_dir, tmp_path: Path) -> None:
    """Offloaded weights have no values to sample; the fingerprint still comes out, stable, and still tells
    checkpoints apart by the weights kept on a device."""
    reference = tiny("llama")
    folder = str(tiny_model_dir("llama"))
    first, second = (_offloaded(folder, tmp_path / name) for name in ("a", "b"))
    assert any(p.is_meta for p in first.parameters())
    fingerprints = [LoadedModel(m, reference.tokenizer, reference.info).fingerprint for m in (first, second)]
    assert fingerprints[0] == fingerprints[1] and fingerprints[0] != reference.fingerprint
    with torch.no_grad():
        second.model.embed_tokens.weight[0, 0] += 1.0
    assert LoadedModel(second, reference.tokenizer, reference.info).fingerprint != fingerprints[0]
