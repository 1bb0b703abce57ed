"""The ``bench`` command: its table of subcommands, ``--version``, and how a failure reaches the user.

User mistakes print one red line and exit with status 2: a :class:`~bench.errors.BenchError` from the
package, and a usage error of the command line itself (an unknown command or option, a missing argument,
a value of the wrong type or out of range). Ctrl-C prints one line saying what was kept and exits 130, and so
does SIGTERM (`kill PID`, a batch scheduler's or `docker stop`'s stop), which would otherwise end the process
without stopping its worker processes or saying what was saved. Anything else is a harness bug and keeps its traceback.
A warning (a damaged file skipped, say) is one line too, ``warning: <message>``, without Python's source location.

This module is the command table; each command lives in a module of its own (run, tables, compare,
reports, gates), and the business logic below them in the package.
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from typing import Annotated

import typer
from rich.markup import escape

from bench.cli import compare, export, gates, leakage, reports, run, tables
from bench.cli.shared import Interrupted, err_console
from bench.errors import BenchError

USAGE_ERROR = 2  # click's status for a usage error, and the harness's for every user mistake
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a process stopped by Ctrl-C

HELP = (
    "Benchmark timm backbones on medical image datasets: train and evaluate sweeps, rank them with "
    "uncertainty, time inference, plot, report and gate.\n\n"
    "Example: bench run (the default sweep), then bench leaderboard, bench plot, bench report."
)

# Help texts are plain text, never markup: with typer's default ("rich") a bracket in a help text, such as
# `run:DATASET/BACKBONE/PROTOCOL[/sSEED]`, is read as a rich tag and `--help` fails (MarkupError) or drops it.
app = typer.Typer(add_completion=True, no_args_is_help=True, help=HELP, rich_markup_mode=None)
list_app = typer.Typer(no_args_is_help=True, help="List registered backbones or datasets.", rich_markup_mode=None)
app.add_typer(list_app, name="list")


def _print_version(value: bool) -> None:
    if value:
        from bench.environment.software import installed_version

        typer.echo(f"backbone-bench {installed_version('backbone-bench')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the installed version and exit."),
    ] = False,
) -> None:
    """The options before any command (``--version``); the commands do the work."""


app.command("run")(run.run)
app.command("leaderboard")(tables.leaderboard)
list_app.command("backbones")(tables.list_backbones)
list_app.command("datasets")(tables.list_datasets)
app.command("latency")(tables.latency)
app.command("compare")(compare.compare)
app.command("agreement")(compare.agreement)
app.command("profile")(tables.profile)
app.command("plot")(reports.plot)
app.command("report")(reports.report)
app.command("reproduction")(reports.reproduction)
app.command("rank")(reports.rank)
app.command("check")(gates.check)
app.command("check-readme")(gates.check_readme)
app.command("export")(export.export)
app.command("leakage")(leakage.leakage)


def main() -> None:
    """Console entry point: every user mistake is one line and exit status 2, Ctrl-C one line and 130.

    Typer bundles its own copy of click (``typer._click``), whose exceptions are not ``click``'s: they are
    caught here by their public base, :class:`typer.TyperException`.
    """
    previous = _terminate_as_interrupt()
    show_warning, warnings.showwarning = warnings.showwarning, _warning_line
    try:
        status = app(prog_name="bench", standalone_mode=False)  # typer.Exit(n) comes back as n, not raised
    except BenchError as err:
        _fail(str(err), USAGE_ERROR)
    except Interrupted as err:
        _fail(str(err), INTERRUPTED, label="interrupted")
    except typer.Abort:  # end of input at a prompt
        _fail("no input", INTERRUPTED, label="aborted")
    except typer.TyperException as err:
        ctx = getattr(err, "ctx", None)
        if type(err).__name__ == "NoArgsIsHelpError":  # `bench` or `bench list` alone: the help is the answer
            typer.echo(err.format_message(), err=True)
            sys.exit(USAGE_ERROR)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _fail(f"{where}{err.format_message()}{hint}", USAGE_ERROR)
    finally:
        warnings.showwarning = show_warning
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if status == INTERRUPTED:  # typer turns Ctrl-C in a command that did not catch it into Exit(130)
        command = " ".join(["bench", *sys.argv[1:2]])
        _fail(f"`{command}` did not finish; the files it wrote are whole, run it again", status, "interrupted")
    if isinstance(status, int) and status:
        sys.exit(status)


def _terminate_as_interrupt() -> signal.Handlers | None:
    """Make SIGTERM raise KeyboardInterrupt, as Ctrl-C does; returns the handler it replaced (None: not set).

    Only the main thread can set a handler; a `bench` called from another thread keeps the default.
    """
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def _warning_line(message: Warning | str, category: type[Warning], *where: object, **_: object) -> None:
    """A warning (a skipped damaged file, say) as one line ``warning: <message>`` on stderr.

    Installed by :func:`main` alone: a user of the command needs the message, not the harness's file and source
    line that Python's format adds; library users keep Python's warnings as they are.
    """
    err_console.print(f"[yellow]warning:[/] {escape(' '.join(str(message).split()))}", highlight=False)


def _fail(message: str, status: int, label: str = "error") -> None:
    err_console.print(f"[red]{label}:[/] {escape(' '.join(message.split()))}", highlight=False)
    sys.exit(status)
