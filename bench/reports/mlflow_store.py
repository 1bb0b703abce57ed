"""The MLflow tracking URI ``bench export --mlflow`` is given, read as MLflow 3 reads it, and what to tell its user.

* ``sqlite:///mlruns.db``: what MLflow 3 recommends, and what the docs do. The client alone (``mlflow-skinny``)
  writes it, through SQLAlchemy and Alembic, which backbone-bench has anyway (Optuna's studies use them). An
  experiment the export creates there keeps its artifacts in ``mlartifacts/<experiment>/`` beside the database
  file (:func:`artifact_location`), not in MLflow's default ``./mlruns`` under whichever folder the export ran in.
* ``file:./mlruns``, or a bare folder: a file store, which MLflow 3 keeps in maintenance mode and refuses unless
  ``MLFLOW_ALLOW_FILE_STORE`` is true. Naming one is asking for one, so :func:`prepare` sets the variable for this
  process where it is unset; reading the store later needs it as well (:func:`view_hint`). Where it is set to
  something else, the export stops with one line saying so.
* ``http(s)://host:port``: a tracking server (``mlflow server``, from the full ``mlflow`` package, any 3.x).
* another database (``postgresql+psycopg://...``): its driver must be installed.

Viewing a local store needs the full ``mlflow`` package (the UI and server are not in ``mlflow-skinny``), at the
version of the ``mlflow-skinny`` that wrote it: a database's schema is versioned, and an older MLflow refuses a
newer database ("Detected out-of-date database schema").
"""

from __future__ import annotations

import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

from bench.errors import ConfigError

FILE_STORE_SWITCH = "MLFLOW_ALLOW_FILE_STORE"
RECOMMENDED = "sqlite:///mlruns.db"
DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
ARTIFACTS = "mlartifacts"
"""Beside a SQLite database, the folder of its experiments' artifacts (``mlflow server``'s own default name)."""


def kind(uri: str) -> str:
    """``file``, ``database``, ``server`` or ``other`` (an MLflow plugin's scheme, ``databricks``...)."""
    scheme = urlsplit(uri).scheme.lower()
    if uri in ("databricks", "databricks-uc"):  # MLflow's names for a Databricks workspace, not folders
        return "other"
    if scheme in ("", "file") or re.fullmatch(r"[a-z]", scheme):  # a bare folder, or a Windows drive letter
        return "file"
    if scheme.split("+", 1)[0] in DATABASES:
        return "database"
    return "server" if scheme in ("http", "https") else "other"


def prepare(uri: str) -> None:
    """Let MLflow 3 open the file store ``uri`` names; one :class:`ConfigError` where the user has refused it."""
    if kind(uri) != "file":
        return
    os.environ.setdefault(FILE_STORE_SWITCH, "true")
    value = os.environ[FILE_STORE_SWITCH]
    if value.strip().lower() not in ("true", "1"):
        raise ConfigError(
            f"--mlflow {uri}: MLflow 3 refuses a file store unless {FILE_STORE_SWITCH}=true (it is {value!r} here); "
            f"use --mlflow {RECOMMENDED}, which MLflow recommends, or set {FILE_STORE_SWITCH}=true"
        )


def sqlite_file(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working folder, as SQLAlchemy reads it); None for
    an in-memory database or another kind of store."""
    if not uri.lower().startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where an experiment the export creates keeps its artifacts: ``mlartifacts/<experiment>/`` beside a SQLite
    database (absolute, so ``mlflow ui`` finds them from any folder); None elsewhere (the store's default)."""
    database = sqlite_file(uri)
    if database is None:
        return None
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment).strip("-.") or "experiment"
    return (database.resolve().parent / ARTIFACTS / name).as_uri()


def failure(uri: str, err: BaseException) -> str:
    """One line for a store that could not be opened or written, with what would fix it where that is known."""
    if isinstance(err, ImportError):
        module = err.name or str(err)
        return f"--mlflow {uri}: the store needs the Python module {module!r}, which is not installed"
    text = " ".join(str(err).split())
    found = re.search(r"out-of-date database schema \(found version (\w+)", text)
    if found and not _known_revision(found.group(1)):  # MLflow's advice (mlflow db upgrade) is for an older one
        return (
            f"--mlflow {uri}: the database was written by a newer MLflow than this one (mlflow-skinny "
            f"{_skinny_version()}; schema {found.group(1)}): export with that MLflow, or into another database"
        )
    return f"--mlflow {uri}: {text}"


def _known_revision(revision: str) -> bool:
    """Whether this MLflow's schema migrations include ``revision`` (else a newer MLflow made it)."""
    import mlflow

    versions = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    return any(versions.glob(f"{revision}_*.py"))


def _skinny_version() -> str:
    try:
        return version("mlflow-skinny")
    except PackageNotFoundError:
        return version("mlflow")


def view_hint(uri: str) -> str:
    """How to look at what was logged to ``uri``: the command, and the package it needs."""
    match kind(uri):
        case "server":
            return f"view: open {uri} in a browser"
        case "file":
            return (
                f"view: {FILE_STORE_SWITCH}=true mlflow ui --backend-store-uri {uri} (the full package: pip install "
                f'"mlflow=={_skinny_version()}"); MLflow 3 keeps file stores in maintenance mode: {RECOMMENDED} is '
                "the store it recommends"
            )
        case "database":
            return (
                f'view: mlflow ui --backend-store-uri {uri} (the full package at this version: pip install "mlflow=='
                f'{_skinny_version()}")'
            )
    return f"view: where {uri} is served"
