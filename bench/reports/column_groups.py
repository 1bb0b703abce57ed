"""The optional leaderboard column groups, declared once: their names, what each adds, and how a choice is read.

Light on purpose (no numpy or pandas): the CLI's ``--columns`` help and check read it before anything heavy is
imported. What each group computes is :mod:`bench.reports.columns`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench.errors import ConfigError


@dataclass(frozen=True)
class ColumnGroup:
    name: str
    description: str


COLUMN_GROUPS: tuple[ColumnGroup, ...] = (
    ColumnGroup(
        "calibration",
        "ECE (15 equal-width bins) before and after temperature scaling fitted on validation (cross-fitted on test "
        "halves, marked ‡, where a run saved no validation scores), Brier, NLL, ECE (15 equal-mass bins); a "
        "reliability diagram per row",
    ),
    ColumnGroup(
        "subgroups",
        "worst-group balanced accuracy (which group, mean ± std over seeds) and the largest gap between groups, "
        "from the dataset's metadata (sex, age band, site); the per-group table beside it",
    ),
    ColumnGroup(
        "robustness",
        "balanced error on the MedMNIST-C corrupted test split (mean over corruptions, seeds: mean ± std) and "
        "relative to the reference row (MedMNIST-C's relative BE and rBE); needs a corrupted eval set",
    ),
    ColumnGroup(
        "external",
        "balanced accuracy and AUC on each external eval set (another dataset through a label map, shared images "
        "removed first) and how many were removed",
    ),
)
"""The optional column groups, in display order."""
COLUMN_GROUP_NAMES: tuple[str, ...] = tuple(g.name for g in COLUMN_GROUPS)


def parse_columns(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Column group names from ``"calibration,subgroups"`` or a list; empty or None: the default columns only.

    An unknown name is a :class:`ConfigError` naming it and the valid ones.
    """
    if value is None:
        return ()
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value)]
    for name in names:
        if name and name not in COLUMN_GROUP_NAMES:
            raise ConfigError(f"unknown column group {name!r}; valid: {', '.join(COLUMN_GROUP_NAMES)}")
    return tuple(dict.fromkeys(n for n in names if n))
