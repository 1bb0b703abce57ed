"""What a printed table declares about its columns: the rich column as asked for, plus its keep and grouping."""

from __future__ import annotations

import pytest
from rich.table import Table

from bench.table_columns import Keep, KeptColumn, add_column, is_grouping, keep_of, wraps


@pytest.mark.parametrize(
    "declared, keep, prose, grouping",
    [
        ({"keep": Keep.ANSWER}, Keep.ANSWER, False, False),
        ({"keep": Keep.DETAIL, "max_width": 30}, Keep.DETAIL, True, False),  # a max_width is prose too
        ({"keep": Keep.ANSWER, "wraps": True}, Keep.ANSWER, True, False),
        ({"keep": Keep.ANSWER, "grouping": True}, Keep.ANSWER, False, True),
    ],
)
def test_a_declared_column_keeps_what_rich_was_given(declared, keep, prose, grouping):
    table = Table()
    add_column(table, "score", justify="right", **declared)
    table.add_row("0.81")
    (column,) = table.columns
    assert isinstance(column, KeptColumn) and column.header == "score" and column.justify == "right"
    assert (keep_of(column), wraps(column), is_grouping(column)) == (keep, prose, grouping)
    assert list(column.cells) == ["0.81"]


def test_an_undeclared_column_is_a_figure():
    table = Table()
    table.add_column("x")
    assert (keep_of(table.columns[0]), wraps(table.columns[0]), is_grouping(table.columns[0])) == (
        Keep.FIGURE,
        False,
        False,
    )
    assert Keep.DETAIL < Keep.FIGURE < Keep.ANSWER  # the order columns go in
