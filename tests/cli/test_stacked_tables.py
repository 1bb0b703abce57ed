"""``bench leaderboard --format csv|json`` stacks the datasets' tables: their attrs must not get in the way."""

from __future__ import annotations

import pandas as pd

from bench.cli.tables import stacked


def test_tables_with_frames_in_their_attrs_stack_into_one():
    """Was: with --columns subgroups each table carried its detail frame in attrs, and pandas' concat raised
    "Can only compare identically-labeled DataFrame objects" comparing them: a traceback for a valid command."""
    tables = []
    for dataset, score in (("isic", 0.8), ("ham10000", 0.5)):
        table = pd.DataFrame({"dataset": [dataset], "balanced_accuracy_mean": [score]})
        table.attrs = {"metric": "balanced_accuracy", "subgroups": pd.DataFrame({"group": [dataset, "other"]})}
        tables.append(table)
    frame = stacked(tables)
    assert list(frame["dataset"]) == ["isic", "ham10000"] and list(frame["balanced_accuracy_mean"]) == [0.8, 0.5]
    assert frame.attrs == {} and "subgroups" in tables[0].attrs  # the tables themselves keep theirs
