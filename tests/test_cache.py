"""The server's caches (ui/cache.py): one model entry per folder, evicted models really freed, and Explore's
aggregates taken without a full trace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from tests.heads.test_aggregate import assert_aggregates_equal, full_trace_aggregates
from ui import cache

ROOT = Path(__file__).resolve().parents[1]

# Runs in its own process: ATTNVIZ_MAX_MODELS is read when ui.cache is imported.
EVICTION = """
import gc, json, sys, threading, weakref
from attnviz.tracing.batching import Request
from ui import cache

def workers():
    return [t for t in threading.enumerate() if t.name.startswith("attnviz-trace-")]

models, traces, most = [], [], 0  # traces kept, as the trace store keeps them: they must not pin a model
for folder in sys.argv[1:]:
    served = cache.served(folder + "/")
    traces.append(served.queue.submit(Request("The cat sat on the mat.")).result(timeout=300))
    models.append(weakref.ref(served.loaded.model))
    most = max(most, len(workers()))
    del served
for worker in workers():
    worker.join(timeout=10)
gc.collect()
last = sys.argv[-1]
print(json.dumps({
    "alive": [model() is not None for model in models],
    "traced": [t.n_tokens > 0 for t in traces],
    "workers": len([w for w in workers() if w.is_alive()]),
    "most_workers": most,
    "one_name": cache.served(last) is cache.served(last + "/./") is cache.served(last + "//"),
}))
"""


def test_five_models_in_turn_keep_three_and_free_the_rest(tiny_model_dir, tmp_path: Path) -> None:
    """ATTNVIZ_MAX_MODELS=3 and five folders loaded and traced in turn: the two evicted models are
    garbage-collected and no trace worker outlives its work (a thread per model kept them all before)."""
    folders = [shutil.copytree(tiny_model_dir("llama"), tmp_path / f"model-{i}") for i in range(5)]
    result = subprocess.run(
        [sys.executable, "-c", EVICTION, *map(str, folders)], cwd=ROOT, env={**os.environ, "ATTNVIZ_MAX_MODELS": "3"},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["traced"] == [True] * 5 and report["alive"] == [False, False, True, True, True], report
    assert report["workers"] == 0 and report["most_workers"] <= 3, report
    assert report["one_name"], report


@pytest.mark.parametrize(("family", "target"), [("llama", None), ("bert", None), ("t5", "un deux")])
def test_explore_aggregates_never_queue_a_full_trace(tiny_model_dir, monkeypatch, family, target) -> None:
    """Decoders and encoders take the first view's kept layer inputs; a long encoder-decoder prompt (nothing
    kept) one forward pass keeping head means. Each aggregate equals Explore's float16 full-trace one."""
    if target is not None:
        monkeypatch.setattr(cache, "MAX_TOKENS", 8)  # a long prompt: an encoder-decoder's is summarised too
    prompt = cache.Prompt(
        str(tiny_model_dir(family)), "one two three four five, one two three (aggregates)", target=target
    )
    loaded = cache.load(prompt.model)
    assert cache.summarised(prompt) and (cache.first_view(prompt).inputs is None) == (target is not None)
    traced = len(cache.trace_store())
    explores = full_trace_aggregates(loaded, prompt.text, float16=True, target=target)
    assert_aggregates_equal(partial(cache.aggregate, prompt, loaded.main_stack), explores, atol=1e-3)
    assert len(cache.trace_store()) == traced
