"""How a table reaches its reader: a terminal of any width, a pipe, or a script (``--format``).

rich squeezes a table wider than the terminal by cutting cells to ``0.…``, and renders piped output at 80
columns, so a name or a number seen in a file could not be found with grep. Here a table is never cut:

- piped, it is printed at its natural width (every cell whole, one line per row);
- in a terminal too narrow for it, columns are kept from the left while they fit whole (headers wrap at
  words, cells never), and a line names the columns left out; when fewer than three fit, each row is
  printed as ``header: value`` lines;
- ``--format md`` prints the Markdown table that is also written to the files, ``csv`` and ``json`` print
  data alone on stdout (messages go to stderr), for scripts.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from bench.cli.shared import console, err_console

if TYPE_CHECKING:  # pandas is imported where a table is printed: `bench --help` should not wait for it
    import pandas as pd

PIPE_WIDTH = 100_000  # wide enough for any table: a piped table is never wrapped or cut
PROSE_WIDTH = 20  # the narrowest a column of prose is shown at in a narrow terminal


class Format(StrEnum):
    table = "table"
    md = "md"
    csv = "csv"
    json = "json"


FormatOption = Annotated[
    Format,
    typer.Option(
        "--format",
        help="table (fitted to the terminal; whole rows when piped), md (Markdown), csv or json (data alone on "
        "stdout, messages on stderr).",
        case_sensitive=False,
    ),
]


def for_people(fmt: Format) -> Console:
    """Where lines for people go: stdout beside a table or Markdown, stderr when stdout carries csv or json."""
    return err_console if fmt in (Format.csv, Format.json) else console


def message(text: str, fmt: Format = Format.table, style: str | None = None) -> None:
    """A line for people (:func:`for_people`), in ``style`` where the terminal shows styles."""
    for_people(fmt).print(escape(text), style=style, soft_wrap=True, highlight=False)


def show(
    table: Table, fmt: Format = Format.table, data: pd.DataFrame | None = None, out: Console | None = None
) -> None:
    """Print ``table`` in ``fmt``; csv and json print ``data`` (numeric) where given, else the table's cells."""
    out = out or console
    if fmt in (Format.csv, Format.json):
        print_data(table_frame(table) if data is None else data, fmt)
    elif fmt == Format.md:
        out.file.write(markdown(table) + "\n")
    elif not out.is_terminal:
        Console(file=out.file, width=PIPE_WIDTH, color_system=None).print(table)
    else:
        fit(table, out)


def print_data(frame: pd.DataFrame, fmt: Format) -> None:
    """csv or json on stdout, nothing else: NaN is an empty csv cell and a json null. json keeps 15 significant
    digits (pandas' most; its default, 10, would round the figures the csv carries whole)."""
    if fmt == Format.csv:
        sys.stdout.write(frame.to_csv(index=False))
    else:
        rows = json.loads(frame.to_json(orient="records", force_ascii=False, double_precision=15))
        sys.stdout.write(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")


def table_frame(table: Table) -> pd.DataFrame:
    """The table's cells as plain text (markup and styles dropped), one column per table column."""
    import pandas as pd

    return pd.DataFrame({_plain(c.header): [_plain(cell) for cell in c.cells] for c in table.columns})


def markdown(table: Table) -> str:
    """Title, the cells as a Markdown table (numbers as printed, not reparsed), and the caption under it."""
    parts = [f"**{_plain(table.title)}**"] if table.title else []
    parts.append(table_frame(table).to_markdown(index=False, disable_numparse=True))
    if table.caption:
        parts.append(_plain(table.caption))
    return "\n\n".join(parts) + "\n"


def fit(table: Table, out: Console) -> None:
    """The table within the terminal's width, every cell whole: leftmost columns, else one block per row.

    Where the table is too wide, each kept column gets a fixed width (rich's own squeezing would cut cells):
    its need, plus what is left over, column by column, up to its natural width.
    """
    needs = [_column_width(c) for c in table.columns]
    natural = [max(n, _natural_width(c)) for n, c in zip(needs, table.columns, strict=True)]
    if _table_width(table, natural) <= out.width:
        out.print(table)
        return
    kept = max((n for n in range(len(needs) + 1) if _table_width(table, needs[:n]) <= out.width), default=0)
    if kept < min(3, len(needs)):  # a row label and a figure or two at least, else one block per row
        _vertical(table, out)
        return
    widths, spare = needs[:kept], out.width - _table_width(table, needs[:kept])
    for i in range(kept):
        extra = min(spare, natural[i] - widths[i])
        widths[i] += extra
        spare -= extra
    narrow = copy.copy(table)
    narrow.columns = [dataclasses.replace(c, width=w) for c, w in zip(table.columns, widths, strict=False)]
    out.print(narrow)
    if kept < len(needs):
        left_out = ", ".join(_plain(c.header) for c in table.columns[kept:])
        out.print(
            f"[dim]not shown at {out.width} columns: {escape(left_out)} (widen the terminal, or --format md)[/]",
            highlight=False,
        )


def _table_width(table: Table, widths: list[int]) -> int:
    """Characters a row takes with these column widths: cells, their padding, and the box's lines."""
    n = len(widths)
    edges = (n - 1 + (2 if table.show_edge else 0)) if table.box and n else 0
    return sum(widths) + n * (table.padding[1] + table.padding[3]) + edges


def _natural_width(column: Column) -> int:
    """The width rich would give the column with room to spare: its whole header and cells on one line."""
    lines = [cell_len(line) for cell in [column.header, *column.cells] for line in _plain(cell).splitlines()]
    widest = max(lines, default=1)
    return min(widest, column.max_width) if column.max_width is not None else widest


def _vertical(table: Table, out: Console) -> None:
    if table.title:
        out.print(Text(_plain(table.title), style="bold"))
    columns = [(_plain(c.header), [_plain(cell) for cell in c.cells]) for c in table.columns]
    for i in range(table.row_count):
        out.print(Text(f"- {columns[0][1][i]}", style="bold"), soft_wrap=True)  # the terminal wraps, never cuts
        for header, cells in columns[1:]:
            out.print(Text(f"  {header}: {cells[i]}"), soft_wrap=True)
    if table.caption:
        out.print(Text(_plain(table.caption), style="dim"))


def _column_width(column: Column) -> int:
    """Room a column needs with no cell cut: its widest cell, or its header's longest word.

    A column with a ``max_width`` holds prose, which wraps at words: it needs its longest word and room for
    a few more (up to ``PROSE_WIDTH``), and takes up to ``max_width`` where there is room.
    """
    text = [_plain(cell) for cell in column.cells]
    if column.max_width is not None:
        words = [cell_len(word) for cell in text for word in cell.split()]
        cells = [min(PROSE_WIDTH, column.max_width, max([cell_len(c) for c in text], default=1)), *words]
    else:
        cells = [cell_len(line) for cell in text for line in cell.splitlines() or [""]]
    header = [cell_len(word) for word in _plain(column.header).split()]
    return max([*cells, *header, column.min_width or 0, 1])


def _plain(value: object) -> str:
    if isinstance(value, Text):
        return value.plain
    return Text.from_markup(value).plain if isinstance(value, str) else str(value)
