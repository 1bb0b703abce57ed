"""Parsing the command line's list and range values into checked Python values, naming the option at fault.

The rules themselves live beside the fields they guard (:mod:`bench.config`): a seed out of range reads
the same from ``--seeds`` as from a sweep file, only the culprit is named differently.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import (
    FieldError,
    check_epochs,
    check_identifier,
    check_resolution,
    check_seeds,
    check_train_fractions,
    is_folder_ref,
)
from bench.errors import ConfigError


def csv(value: str | None) -> list[str]:
    """``a, b,,c`` as ``["a", "b", "c"]``; nothing given is an empty list."""
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def ints(value: str | None, option: str) -> list[int]:
    try:
        return [int(v) for v in csv(value)]
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, got {value!r}") from None


def names(value: str | None, option: str, what: str) -> tuple[str, ...]:
    """Comma-separated names that become folder names under the results folder (no paths)."""
    return tuple(check_identifier(v, what, option) for v in csv(value))


def datasets(value: str | None, option: str = "--datasets") -> tuple[str, ...]:
    """Comma-separated dataset names, or folders (``./my_photos``: :mod:`bench.data.folder`) that name themselves."""
    return tuple(v if is_folder_ref(v) else check_identifier(v, "dataset name", option) for v in csv(value))


def seeds(value: str, option: str = "--seeds") -> tuple[int, ...]:
    parsed = tuple(ints(value, option))
    _checked(option, check_seeds, parsed)
    return parsed


def epochs(value: str | None, option: str = "--epochs") -> int | tuple[int, ...] | None:
    """One count for every phase, or one per phase; None keeps the protocol's."""
    if value is None:
        return None
    per_phase = ints(value, option)
    _checked(option, check_epochs, per_phase)
    return per_phase[0] if len(per_phase) == 1 else tuple(per_phase)


def train_fractions(value: str | None, option: str = "--train-fractions") -> tuple[float, ...] | None:
    """Comma-separated shares of the training split, each in (0, 1] (``0.1,0.25,0.5,1``); None keeps the sweep's."""
    if value is None:
        return None
    try:
        parsed = tuple(float(v) for v in csv(value))
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated fractions in (0, 1], got {value!r}") from None
    _checked(option, check_train_fractions, parsed)
    return parsed


def fraction_budget(value: str | None, option: str = "--fraction-budget") -> str | None:
    """``epochs`` or ``steps`` (:meth:`bench.runs.sweep.Group.epochs_at`); None keeps the sweep's."""
    from bench.runs.spec import FRACTION_BUDGETS

    if value is not None and value not in FRACTION_BUDGETS:
        raise ConfigError(f"{option} takes {' or '.join(FRACTION_BUDGETS)}, got {value!r}")
    return value


def resolutions(value: str, option: str) -> tuple[int, ...]:
    parsed = tuple(ints(value, option))
    for each in parsed:
        _checked(option, check_resolution, each)
    return parsed


def results_folder(value: str | Path) -> Path:
    """``--results-dir`` as a path; an empty or blank one is refused (``Path("")`` is ``.``: it would write
    ``runs/``, ``splits/`` and ``leaderboards/`` into the current folder). ``.`` itself is taken as written."""
    if not str(value).strip():
        what = "empty" if not str(value) else "only whitespace"
        raise ConfigError(f"--results-dir is {what}: name a folder, or `.` for the current one")
    return Path(value)


def _checked(option: str, check: Callable[[Any], None], value: Any) -> None:
    """Run a :mod:`bench.config` field rule on an option's value; its complaint names the option."""
    try:
        check(value)
    except FieldError as err:
        raise ConfigError(f"{option} {err.problem}") from None
