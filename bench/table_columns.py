"""What a printed table declares about each column, once, where the column is declared: how much it matters when
the terminal is too narrow for every column, and whether it is the table's grouping.

A narrow terminal drops columns lowest :class:`Keep` first (rightmost first within one), and never an ``ANSWER``
column: a table whose answer columns do not fit whole is printed one block per row instead
(:func:`bench.cli.output.fit`). A grouping column carries what the table's title says about every row (the
dataset of a leaderboard): a terminal shows the title, so it leaves the column out; piped output, csv and json
show it on every row, so a line found with grep still says which dataset it is from.

Light on purpose (rich only): the table builders of every layer declare their columns with it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum

from rich.table import Column, Table


class Keep(IntEnum):
    """How long a column stays as the terminal narrows."""

    DETAIL = 1  # descriptive: conditions, counts, sizes, settings; the first to go
    FIGURE = 2  # the other figures, and what tells rows apart beyond their name
    ANSWER = 3  # the row's name and what decides the table's question: never dropped


@dataclass
class KeptColumn(Column):
    """A rich column with its :class:`Keep`; ``wraps``: its cells are prose, wrapped at words where narrow;
    ``grouping``: it holds the table's grouping (shown where rows are read without the title)."""

    keep: Keep = Keep.FIGURE
    wraps: bool = False
    grouping: bool = False


def add_column(
    table: Table, header: str, keep: Keep, *, wraps: bool = False, grouping: bool = False, **options
) -> None:
    """``table.add_column(header, **options)``, the column declared with its ``keep``, ``wraps`` and ``grouping``."""
    table.add_column(header, **options)
    plain = table.columns[-1]
    table.columns[-1] = KeptColumn(
        **{f.name: getattr(plain, f.name) for f in fields(Column)}, keep=keep, wraps=wraps, grouping=grouping
    )


def keep_of(column: Column) -> Keep:
    """The column's :class:`Keep`; a column declared without one is a ``FIGURE``."""
    return column.keep if isinstance(column, KeptColumn) else Keep.FIGURE


def wraps(column: Column) -> bool:
    """Whether the column's cells are prose, which a narrow terminal wraps at words (a ``max_width`` says so too)."""
    return (isinstance(column, KeptColumn) and column.wraps) or column.max_width is not None


def is_grouping(column: Column) -> bool:
    return isinstance(column, KeptColumn) and column.grouping
