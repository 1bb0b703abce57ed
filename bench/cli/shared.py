"""What every command module shares: the consoles, the results-folder option, reading stored records."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from bench.cli.options import results_folder
from bench.errors import ConfigError
from bench.paths import PUBLISHED_RESULTS, WORKING_RESULTS

if TYPE_CHECKING:
    from bench.runs.record import RunRecord

console = Console()
err_console = Console(stderr=True, soft_wrap=True)  # one error, one line: never wrapped

ResultsDir = Annotated[
    Path,
    typer.Option(
        "--results-dir",
        parser=results_folder,  # the raw string: typer's Path would read '' as '.'
        metavar="<path>",
        help="Where run records and tables go: your own runs by default (git-ignored); the published ones, "
        "which the README and the gates quote, are in results/.",
    ),
]


class Interrupted(Exception):
    """Ctrl-C during a command that knows what it has saved; ``str(err)`` is the one line that says so."""


def stored_records(results_dir: Path) -> list[RunRecord]:
    """The run records under ``results_dir``; none at all is a user mistake (wrong folder, nothing run yet)."""
    from bench.runs.record import load_records

    records = load_records(results_dir)
    if not records:
        elsewhere = "" if results_dir == WORKING_RESULTS else f" --results-dir {results_dir}"
        raise ConfigError(
            f"no run records under {results_dir}/runs: run `bench run{elsewhere}` first, "
            f"or read the published ones with --results-dir {PUBLISHED_RESULTS}"
        )
    return records
