"""The server's model cache (ui/cache.py): one entry per folder, and evicted models really freed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
