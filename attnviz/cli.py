"""Command line: ``python -m attnviz models | trace | attribute``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from attnviz.attribution import attribute
from attnviz.loading import DEFAULT_MODEL, ModelLoadError, describe_builtins, load_model
from attnviz.passages import GRANULARITIES
from attnviz.trace import PromptError, trace


def _models(_: argparse.Namespace) -> int:
    for row in describe_builtins():
        status = "available" if row["available"] else "missing (run the set-up command)"
        print(f"{row['name']:<24} {status:<34} {row['description']}")
    return 0


def _trace(args: argparse.Namespace) -> int:
    loaded = load_model(args.model, progress=lambda message: print(message, file=sys.stderr))
    result = trace(loaded, args.text, target=args.target, float16=False)
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
    loaded = load_model(args.model, progress=lambda message: print(message, file=sys.stderr))
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m attnviz", description="Record and explain attention.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models", help="list the built-in models and whether each is installed")
    trace_cmd = commands.add_parser("trace", help="trace one prompt and write the weights to .npz")
    trace_cmd.add_argument("--model", required=True, help="built-in name, local folder or hub id")
    trace_cmd.add_argument("--text", required=True, help="the prompt")
    trace_cmd.add_argument("--target", default=None, help="decoder text for encoder-decoder models")
    trace_cmd.add_argument("--out", required=True, type=Path, help="output .npz file")
    attribute_cmd = commands.add_parser("attribute", help="answer questions over passages and attribute the answers")
    attribute_cmd.add_argument(
        "--cases", required=True, type=Path,
        help="input .jsonl: question, passages and optionally answer (attributed as given, not generated) per line",
    )  # fmt: skip
    attribute_cmd.add_argument("--out", required=True, type=Path, help="output .jsonl: adds answer and scores")
    attribute_cmd.add_argument("--model", default=DEFAULT_MODEL, help="built-in name, local folder or hub id")
    attribute_cmd.add_argument(
        "--granularity", choices=GRANULARITIES, default="passage", help="attribute to whole passages or sentences"
    )
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "models": _models,
    "trace": _trace,
    "attribute": _attribute,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (ModelLoadError, PromptError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
