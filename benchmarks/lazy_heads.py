"""Explore's first view from reductions only, and heads recorded when opened (issue 25), against their baselines.

Rows, each ratio's two sides timed in turns in one fresh process (the machine drifts between processes):
``first_view_pass``: the first view's one pass (summary reductions, layer inputs kept; no full map but the
detail head's within the full-trace limit) vs one
SDPA forward (target ≤ 1.5); ``open_head``: one head recorded from its layer's kept input vs one SDPA
forward (target ≤ 1.1); ``another_head``: one more head of a long prompt vs what Explore ran before, a full
pass recording that head (target ≤ 2 s at 3,000 tokens); ``first_view_bytes``: bytes a cached first view
keeps (summary arrays, layer inputs, the detail head's map) vs the float16 maps of a full trace (0.6 GB at 1,024 tokens).
Run ``python -m benchmarks.lazy_heads --worker CASE TOKENS`` for one worker's JSON; :func:`rows` runs them all.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from benchmarks.run import (
    MODEL,
    Measurement,
    Row,
    _row,
    _run_worker,
    baseline_work,
    input_ids,
    prompt_text,
)

MODULE = "benchmarks.lazy_heads"  # each worker runs in a fresh process (see benchmarks.run._run_worker)
ANOTHER_HEAD_TOKENS = 3000
QUICK_ANOTHER_HEAD_TOKENS = 64
BYTES_TOKENS = 1024
ROUNDS = {128: 5, 512: 3, 1024: 3}  # rounds of turns; larger sizes 1


def _loaded():  # noqa: ANN202 - a LoadedModel, imported lazily like the other workers
    import torch

    import attnviz

    torch.set_num_threads(min(2, os.cpu_count() or 2))
    return attnviz.load_model(MODEL)


def _first_view(loaded, text: str):  # noqa: ANN001, ANN202 - a FirstView
    """Explore's first view of ``text`` (ui.cache.first_view): one summary pass keeping each layer's attention
    input and, within the full-trace limit, recording the head shown in detail (layer 0, head 0, the default)."""
    from attnviz.heads.first_view import first_view
    from benchmarks.run import _full_trace_limit

    long = len(loaded.tokenizer(text)["input_ids"]) > _full_trace_limit()
    return first_view(loaded, text, detail=None if long else (0, 0))


def _in_turns(works: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median seconds of each work, timed in turns round after round."""
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(rounds):
        for name, work in works.items():
            start = time.perf_counter()
            result = work()
            times[name].append(time.perf_counter() - start)
            del result
    return {name: statistics.median(seconds) for name, seconds in times.items()}


def passes(tokens: int) -> dict[str, float]:
    """Seconds of an SDPA forward, the first view's pass and opening one head (middle layer), in turns."""
    from attnviz.tracing.layer_inputs import trace_head

    loaded = _loaded()
    text = prompt_text(loaded.tokenizer, tokens)
    sdpa = baseline_work(loaded, "sdpa_forward", input_ids(loaded, text))
    _first_view(loaded, prompt_text(loaded.tokenizer, 16))  # warm-up
    kept = _first_view(loaded, text).inputs
    layer = loaded.n_layers // 2
    works = {
        "sdpa_forward": sdpa,
        "first_view_pass": lambda: _first_view(loaded, text),
        "open_head": lambda: trace_head(loaded, kept, layer, 0),
    }
    return _in_turns(works, ROUNDS.get(tokens, 1))


def another_head(tokens: int) -> dict[str, float]:
    """After the first view and one head opened: seconds to open another head from the kept input,
    and with the full pass Explore ran before (``trace(..., layers=[l], heads=[h])``)."""
    from attnviz.tracing.layer_inputs import trace_head
    from attnviz.tracing.trace import trace

    loaded = _loaded()
    text = prompt_text(loaded.tokenizer, tokens)
    kept = _first_view(loaded, text).inputs
    trace_head(loaded, kept, 0, 0)  # a long prompt's first view opens its detail head from the kept input
    layer, head = loaded.n_layers // 2, loaded.n_heads // 2
    works = {
        "kept_input": lambda: trace_head(loaded, kept, layer, head),
        "full_pass": lambda: trace(loaded, text, layers=[layer], heads=[head], max_tokens=None),
    }
    return _in_turns(works, 1) | {"tokens": float(kept.input_ids.size)}


def first_view_bytes(tokens: int) -> dict[str, float]:
    """Bytes a cached first view keeps against the float16 maps Explore's full trace keeps."""
    from attnviz.tracing.trace import trace

    loaded = _loaded()
    text = prompt_text(loaded.tokenizer, tokens)
    view = _first_view(loaded, text)
    full = trace(loaded, text, float16=True)
    return {"first_view": float(view.nbytes), "full_trace": float(full.attention.nbytes)}


WORKERS: dict[str, Callable[[int], dict[str, float]]] = {
    "passes": passes,
    "another_head": another_head,
    "bytes": first_view_bytes,
}


def rows(sizes: Sequence[int], progress: Callable[[str], None], quick: bool = False) -> list[Row]:
    """The first_view_pass and open_head rows at ``sizes``, another_head and first_view_bytes at their sizes."""
    found: list[Row] = []
    for tokens in sizes:
        progress(f"first_view_pass, open_head @ {tokens}")
        timed = _run_worker("passes", tokens, module=MODULE)
        sdpa = Measurement(timed["sdpa_forward"], None)
        found.append(_row("first_view_pass", tokens, Measurement(timed["first_view_pass"], None), sdpa,
                          "the first view's one pass (summary, layer inputs, the detail head) vs SDPA forward"))  # fmt: skip
        found.append(_row("open_head", tokens, Measurement(timed["open_head"], None), sdpa,
                          "one head recorded from its layer's kept input vs SDPA forward"))  # fmt: skip
    long_tokens = QUICK_ANOTHER_HEAD_TOKENS if quick else ANOTHER_HEAD_TOKENS
    progress(f"another_head @ {long_tokens}")
    timed = _run_worker("another_head", long_tokens, module=MODULE)
    found.append(_row("another_head", int(timed["tokens"]), Measurement(timed["kept_input"], None),
                      Measurement(timed["full_pass"], None), "another head from its layer's kept input vs a full pass recording it"))  # fmt: skip
    size = min(BYTES_TOKENS, max(sizes))
    progress(f"first_view_bytes @ {size}")
    kept = _run_worker("bytes", size, module=MODULE)
    found.append(_row("first_view_bytes", size, Measurement(0.0, None, kept["first_view"]),
                      Measurement(0.0, None, kept["full_trace"]), "bytes a cached first view keeps vs a full trace's fp16 maps"))  # fmt: skip
    return found


if __name__ == "__main__":
    if len(sys.argv) in (4, 5) and sys.argv[1] == "--worker":  # a fifth (rounds) comes from _run_worker
        print(json.dumps(WORKERS[sys.argv[2]](int(sys.argv[3]))))
    else:
        raise SystemExit(f"usage: python -m benchmarks.lazy_heads --worker {{{','.join(WORKERS)}}} TOKENS")
