"""Every command's ``--help`` renders: exit 0, no traceback, 80 columns at most, its usage and first sentence.

The commands are found by walking the click tree typer builds from the app, so a command added later is
covered without touching this file. Help texts are plain text (``rich_markup_mode=None``): a bracket such as
``PROTOCOL[/sSEED]`` once made ``bench run --help`` a rich ``MarkupError`` traceback. Every command runs
in-process through the console entry point (seconds faster); ``bench --help`` and ``bench run --help`` also run
as the installed ``bench`` script, with stdout a pipe. Each example line of a help text ("Peers: bench profile
...") starts its own line in the output: click re-wraps a paragraph, so two example lines in one paragraph once ran
together ("--threads 1 GPU" / "engines: bench profile ...").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from console import run_bench

from bench.cli.commands import app

COLUMNS = 80
BENCH = Path(sys.executable).with_name("bench")  # the console script installed beside this interpreter


def _commands(command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """(argument path, click command) of ``command`` and of every command and subcommand below it."""
    found = [(path, command)]
    for name, sub in (getattr(command, "commands", None) or {}).items():
        found += _commands(sub, (*path, name))
    return found


COMMANDS = _commands(typer.main.get_command(app))


def _first_sentence(command) -> str:
    """The first sentence of a command's help, whitespace collapsed (help wraps it over lines)."""
    first = (command.help or "").strip().split("\n\n")[0]
    return " ".join(re.split(r"(?<=[.?!])\s", " ".join(first.split()))[0].split())


EXAMPLE = re.compile(r"^([A-Z][\w ]*: bench)\b")  # "Example: bench run ...", "GPU engines: bench profile ..."


def _examples_start_lines(command, out: str) -> list[str]:
    """The example lines of ``command``'s help whose label does not start a line of the rendered ``out``."""
    starts = {line.strip() for line in out.splitlines()}
    labels = [m.group(1) for line in (command.help or "").splitlines() if (m := EXAMPLE.match(line.strip()))]
    return [label for label in labels if not any(s.startswith(label) for s in starts)]


def _check(path: tuple[str, ...], command, status: int, out: str, err: str) -> None:
    shown = " ".join(["bench", *path])
    assert status == 0, f"`{shown} --help` exited {status}:\n{out}\n{err}"
    assert "Traceback" not in out + err, err
    wide = [line for line in out.splitlines() if len(line) > COLUMNS]
    assert not wide, f"`{shown} --help`: lines wider than {COLUMNS} columns: {wide}"
    assert f"Usage: {shown} " in out
    sentence = _first_sentence(command)
    assert sentence and sentence in " ".join(out.split()), f"`{shown} --help` lacks its first sentence {sentence!r}"
    run_together = _examples_start_lines(command, out)
    assert not run_together, f"`{shown} --help`: examples run into the line before: {run_together}"


def test_the_walk_finds_the_nested_commands():
    paths = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "run", "leaderboard", "list", "list backbones", "list datasets"} <= paths


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "bench" for p, _ in COMMANDS])
def test_help_renders(path, command, monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, *path, "--help", columns=COLUMNS)
    _check(path, command, out.status, out.stdout, out.stderr)


@pytest.mark.parametrize("path", [(), ("run",)], ids=["bench", "run"])
def test_help_of_the_installed_script(path):
    if not BENCH.exists():
        pytest.skip(f"no installed bench script at {BENCH}")
    env = {**os.environ, "COLUMNS": str(COLUMNS)}
    proc = subprocess.run([BENCH, *path, "--help"], capture_output=True, text=True, env=env, timeout=120)
    command = dict(COMMANDS)[path]
    _check(path, command, proc.returncode, proc.stdout, proc.stderr)


@pytest.mark.parametrize(
    ("args", "where"), [(("run", "--nope"), "bench run"), (("nope",), "bench"), (("list", "nope"), "bench list")]
)
def test_a_usage_error_is_one_line_that_points_to_help(args, where, monkeypatch, capsys):
    out = run_bench(monkeypatch, capsys, *args, columns=COLUMNS)
    assert out.status == 2 and out.stdout == ""
    assert out.stderr.count("\n") == 1 and f"(see `{where} --help`)" in out.stderr, out.stderr
