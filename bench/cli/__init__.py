"""The ``bench`` command: a thin typer layer over the package's API."""

from bench.cli.commands import app, main

__all__ = ["app", "main"]
