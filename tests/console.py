"""The ``bench`` console entry point run in-process, for the tests that read what it prints.

In-process is seconds faster than a subprocess (no second import of torch and timm) and sees the same code
path from argument parsing to exit status; the subprocess tests keep the real console script covered.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass

from bench.cli.commands import main


@dataclass(frozen=True)
class Output:
    status: int
    stdout: str
    stderr: str


def run_bench(monkeypatch, capsys, *args: str, columns: int | None = None) -> Output:
    """``bench ARGS`` in this process, its exit status and captured output (not a terminal: what a pipe gets)."""
    monkeypatch.setattr(sys, "argv", ["bench", *args])
    if columns is not None:
        monkeypatch.setenv("COLUMNS", str(columns))
    try:
        main()
        status = 0
    except SystemExit as exit_info:
        status = 0 if exit_info.code is None else exit_info.code
    out = capsys.readouterr()
    return Output(status, out.out, out.err)


def as_from_a_terminal() -> None:
    """``preexec_fn`` for a subprocess a test will Ctrl-C: SIGINT at its default, as a terminal's foreground job has.

    A suite started in the background of a shell without job control (``bash .ci/run &``) inherits SIGINT
    ignored, and a Python started so keeps ignoring it: the test's Ctrl-C would then do nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
