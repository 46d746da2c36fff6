"""Run ``python -m attnviz`` commands in the test process: the same ``main`` without a fresh interpreter.

A subprocess re-imports torch and transformers for every command (seconds each, minutes on a busy
machine); tests/test_layout.py still runs the real ``python -m attnviz`` entry point once.
"""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from attnviz.cli import main


@dataclass(frozen=True)
class CliResult:
    """What a command returned and printed, as a subprocess would report it."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """Run ``python -m attnviz *args`` through :func:`attnviz.cli.main`; argparse's exits become return codes."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 2
    return CliResult(code, out.getvalue(), err.getvalue())
