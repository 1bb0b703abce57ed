"""Developer sessions: the same commands the README and CI use."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint"]


@nox.session
def tests(session: nox.Session) -> None:
    """The README's test command."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", "bench", "tests", "noxfile.py")


@nox.session
def bench(session: nox.Session) -> None:
    """pytest-benchmark figures (latency of small backbones on this CPU)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "tests/benchmarks", "--benchmark-only", *session.posargs)
