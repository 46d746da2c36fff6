"""Command line: ``python -m attnviz models | prepare | trace | attribute | study | atlas``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from attnviz.heads.atlas import DEFAULT_PROMPTS, atlas
from attnviz.heads.corpus import read_corpus, shipped_corpus
from attnviz.heads.summary import summarise
from attnviz.models.loading import LoadedModel, ModelLoadError, load_model
from attnviz.models.registry import BUILTINS, DEFAULT_MODEL, describe_builtins
from attnviz.sources.attribution import attribute
from attnviz.sources.calibration import atlas_retrieval, calibration
from attnviz.sources.passages import GRANULARITIES
from attnviz.sources.study import ORDER_KINDS, STUDY_METHODS, compare, run_study, with_passage
from attnviz.sources.study_io import export_json, read_study
from attnviz.tracing.inputs import PromptError
from attnviz.tracing.trace import trace


def _models(_: argparse.Namespace) -> int:
    for row in describe_builtins():
        status = "available" if row["available"] else "missing (run the set-up command)"
        print(f"{row['name']:<24} {status:<34} {row['description']}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    """Convert every installed built-in model and calibrate the chat model's retrieval heads, once.

    Both are cached on disk, so a second run only loads the models (a few seconds) and the
    app's first page never waits on them. ``--recalibrate`` chooses the heads again: the
    operator's job, since it changes the heads every session's results use.
    """
    say = lambda message: print(f"[prepare] {message}", file=sys.stderr, flush=True)  # noqa: E731
    installed = [row["name"] for row in describe_builtins() if row["available"]]
    for number, name in enumerate(installed, start=1):
        start = time.perf_counter()
        say(f"{number}/{len(installed)} {name}: converting once (first time ~15 s), then loading")
        loaded = load_model(name, progress=say)
        if loaded.info.has_chat_template:
            say(f"{name}: finding retrieval heads for Sources (first time ~2 min)")
            say(f"{name}: {len(calibration(loaded, refresh=args.recalibrate).heads)} retrieval heads")
        say(f"{name}: ready ({time.perf_counter() - start:.1f} s)")
    missing = sorted(set(BUILTINS) - set(installed))
    if missing:
        say(f"not installed (run the set-up command): {', '.join(missing)}")
    return 0


def _prompt_text(args: argparse.Namespace) -> str:
    """The prompt from --text, or read from --text-file (UTF-8)."""
    if args.text_file is None:
        return args.text
    try:
        return args.text_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PromptError(f"Could not read the prompt from {args.text_file}: {error}") from None


def _load(args: argparse.Namespace) -> LoadedModel:
    say = lambda message: print(message, file=sys.stderr)  # noqa: E731
    loaded = load_model(args.model, progress=say, device=args.device, dtype=args.dtype)
    print(f"running on {loaded.device_label}", file=sys.stderr)
    return loaded


def _trace(args: argparse.Namespace) -> int:
    text = _prompt_text(args)
    loaded = _load(args)
    if args.summary:
        summary = summarise(loaded, text, target=args.target)
        np.savez_compressed(args.out, **summary.arrays())
        print(f"wrote {args.out}: {summary.n_tokens} tokens, thumbnails {summary.thumbnails.shape}", file=sys.stderr)
        return 0
    result = trace(loaded, text, target=args.target, float16=False)
    arrays: dict[str, np.ndarray] = {
        "tokens": np.array(result.tokens, dtype=object).astype(str),
        "attention": result.attention.astype(np.float32),
    }
    if result.kind == "encoder-decoder":
        arrays["target_tokens"] = np.array(result.target_tokens, dtype=object).astype(str)
        arrays["decoder_attention"] = result.decoder_attention.astype(np.float32)
        arrays["cross_attention"] = result.cross_attention.astype(np.float32)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}: {len(result.tokens)} tokens, attention {result.attention.shape}", file=sys.stderr)
    return 0


def _attribute(args: argparse.Namespace) -> int:
    cases = []
    for number, line in enumerate(args.cases.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as error:
            raise PromptError(f"{args.cases} line {number} is not JSON: {error}") from None
        if not isinstance(case, dict) or not isinstance(case.get("question"), str) or not isinstance(
            case.get("passages"), list
        ):
            raise PromptError(f"{args.cases} line {number}: needs 'question' (text) and 'passages' (list of texts)")
        if "answer" in case and not isinstance(case["answer"], str):
            raise PromptError(f"{args.cases} line {number}: 'answer', when given, must be text")
        cases.append(case)
    loaded = _load(args)
    with args.out.open("w", encoding="utf-8") as out:
        for number, case in enumerate(cases, start=1):
            result = attribute(
                loaded, case["question"], case["passages"], method=("attention", "ablation"),
                answer=case.get("answer"), granularity=args.granularity,
            )  # fmt: skip
            scores = {method: result.passage_scores(method).round(6).tolist() for method in result.scores}
            extra = {"answer_origin": result.answer_origin, "answer_logprob": round(float(result.logprobs.sum()), 6)}
            if args.granularity == "sentence":
                extra["sources"] = result.labels
            out.write(json.dumps({**case, "answer": result.answer, **extra, "scores": scores}) + "\n")
            print(f"{number}/{len(cases)}: {result.answer!r}", file=sys.stderr)
    return 0


def _variant(spec: str) -> tuple[str, str]:
    """``PASSAGE_ID=FILE`` -> (passage id, the rewritten text read from FILE)."""
    passage_id, sep, path = spec.partition("=")
    if not sep or not passage_id or not path:
        raise PromptError(f"--variant takes PASSAGE_ID=FILE, not {spec!r}")
    try:
        return passage_id, Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PromptError(f"Could not read the rewritten passage from {path}: {error}") from None


def _study(args: argparse.Namespace) -> int:
    """Run a citation study (and its A/B rewrite, if asked) and write passages, positions, rows and variant as JSON."""
    study = read_study(args.cases, args.passages)
    variant = None if args.variant is None else _variant(args.variant)
    edited = None if variant is None else with_passage(study, *variant)
    loaded = _load(args)

    def say(label: str) -> Callable[[float, str], None]:
        return lambda done, what: print(f"[{label}] {what}", file=sys.stderr, flush=True)

    options = {"n_orders": args.orders, "order_kind": args.order_kind, "seed": args.seed}
    options["method"] = args.method
    result = run_study(loaded, study, progress=say("study"), **options)
    comparison = None
    if edited is not None and variant is not None:
        rewritten = run_study(loaded, edited, progress=say("study B"), **options)
        comparison = compare(result, rewritten, variant[0])
    args.out.write_text(json.dumps(export_json(result, comparison), indent=2), encoding="utf-8")
    print(f"wrote {args.out}: {len(result.runs)} runs in {result.seconds:.1f} s", file=sys.stderr)
    return 0


def _atlas(args: argparse.Namespace) -> int:
    """Statistics, roles and ablation checks of every head over a corpus, as JSON (cached on disk)."""
    corpus = shipped_corpus() if args.corpus is None else read_corpus(args.corpus)
    loaded = _load(args)
    retrieval = atlas_retrieval(loaded) if loaded.info.has_chat_template else None
    if retrieval is None:
        print("no cached retrieval calibration: the retrieval role stays empty (run 'prepare')", file=sys.stderr)
    start = time.perf_counter()
    result = atlas(
        loaded, corpus, prompts=args.prompts, retrieval=retrieval,
        progress=lambda done, what: print(f"[{done:4.0%}] {what}", file=sys.stderr, flush=True),
    )  # fmt: skip
    args.out.write_text(json.dumps(result.export(), indent=1), encoding="utf-8")
    held = ", ".join(f"{role} {len(heads)}" for role, heads in result.roles.items())
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s: heads per role: {held}", file=sys.stderr)
    return 0


def _placement_options(command: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``, read by :func:`_load`, for every command that loads a model."""
    command.add_argument("--device", default="auto", help="auto (default; ATTNVIZ_DEVICE overrides), cpu, cuda, cuda:N")
    command.add_argument(
        "--dtype", default="auto", help="auto (default: float32 on CPUs, bfloat16 on GPUs), float32, bfloat16, float16"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m attnviz", description="Record and explain attention.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the built-in models and whether each is installed")
    prepare_cmd = commands.add_parser("prepare", help="convert the built-in models and calibrate the chat model (once)")
    prepare_cmd.add_argument(
        "--recalibrate", action="store_true",
        help="choose the chat model's retrieval heads again, even if they are cached (the app's Recalibrate "
        "button shows only with ATTNVIZ_ALLOW_RECALIBRATE=1)",
    )  # fmt: skip


    trace_cmd = commands.add_parser("trace", help="trace one prompt and write the weights (or a summary) to .npz")
    trace_cmd.add_argument("--model", required=True, help="built-in name, local folder or hub id")
    prompt = trace_cmd.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--text", help="the prompt")
    prompt.add_argument("--text-file", type=Path, help="a UTF-8 file holding the prompt")
    trace_cmd.add_argument(
        "--summary", action="store_true",
        help="write thumbnails [layers, heads, 24, 24] and head_stats [layers, heads, S] instead of full maps "
        "(memory-bounded: prompts up to the model's context length)",
    )  # fmt: skip
    _placement_options(trace_cmd)
    trace_cmd.add_argument("--target", default=None, help="decoder text for encoder-decoder models")
    trace_cmd.add_argument("--out", required=True, type=Path, help="output .npz file")
    attribute_cmd = commands.add_parser("attribute", help="answer questions over passages and attribute the answers")
    attribute_cmd.add_argument(
        "--cases", required=True, type=Path,
        help="input .jsonl: question, passages and optionally answer (attributed as given, not generated) per line",
    )  # fmt: skip
    attribute_cmd.add_argument("--out", required=True, type=Path, help="output .jsonl: adds answer and scores")
    attribute_cmd.add_argument("--model", default=DEFAULT_MODEL, help="built-in name, local folder or hub id")
    _placement_options(attribute_cmd)
    attribute_cmd.add_argument(
        "--granularity", choices=GRANULARITIES, default="passage", help="attribute to whole passages or sentences"
    )
    study_cmd = commands.add_parser(
        "study", help="a citation study: many questions, each with its passages in K orders, with intervals"
    )
    study_cmd.add_argument(
        "--cases", required=True, type=Path,
        help=".jsonl/.csv: question, optional answer (teacher-forced), optional passage_ids or passages per record",
    )  # fmt: skip
    study_cmd.add_argument("--passages", type=Path, help="shared passages, .jsonl/.csv with id and text")
    study_cmd.add_argument("--orders", type=int, default=3, help="passage orders per question (default 3)")
    study_cmd.add_argument(
        "--order-kind", choices=ORDER_KINDS, default="random", help="random permutations or rotations"
    )
    study_cmd.add_argument("--seed", type=int, default=0, help="seed of the random orders and the bootstrap")
    study_cmd.add_argument(
        "--variant", help="PASSAGE_ID=FILE: rerun with that passage rewritten, paired per question"
    )
    study_cmd.add_argument(
        "--method", choices=STUDY_METHODS, default="attention", help="calibrated heads or ablation"
    )
    study_cmd.add_argument("--model", default=DEFAULT_MODEL, help="built-in name, local folder or hub id")
    _placement_options(study_cmd)
    study_cmd.add_argument(
        "--out", required=True, type=Path, help="output .json: passages, positions, rows, variant"
    )
    atlas_cmd = commands.add_parser("atlas", help="what every head does over a corpus: statistics, roles, ablation")
    atlas_cmd.add_argument("--model", required=True, help="built-in name, local folder or hub id")
    atlas_cmd.add_argument(
        "--corpus", type=Path, default=None,
        help="a .txt (passages separated by blank lines) or .jsonl ({\"text\": ...} per line); default: the shipped corpus",
    )  # fmt: skip
    atlas_cmd.add_argument(
        "--prompts", type=int, default=DEFAULT_PROMPTS,
        help=f"natural passages to read (default {DEFAULT_PROMPTS}; generated sequences are added)",
    )  # fmt: skip
    _placement_options(atlas_cmd)
    atlas_cmd.add_argument("--out", required=True, type=Path, help="output .json file")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "models": _models,
    "prepare": _prepare,
    "trace": _trace,
    "attribute": _attribute,
    "study": _study,
    "atlas": _atlas,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ModelLoadError, PromptError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
