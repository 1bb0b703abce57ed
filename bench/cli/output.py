"""How a table reaches its reader: a terminal of any width, a pipe, or a script (``--format``).

rich squeezes a table wider than the terminal by cutting cells to ``0.…``, and renders piped output at 80
columns, so a name or a number seen in a file could not be found with grep. Here a table is never cut:

- piped, it is printed at its natural width (every cell whole, one line per row, prose unwrapped), with its
  grouping (a leaderboard's dataset) as a column, so each line says where it is from;
- in a terminal too narrow for it, it is drawn without vertical lines and columns go by what they are worth
  (:mod:`bench.table_columns`): descriptive ones first, then the other figures, never a row's name or what
  decides the question (a leaderboard's sort metric, its CI and latency, a verdict, a noise note); headers wrap
  at words and underscores, cells never (prose at words), and a line names the columns left out; where the
  answer columns do not fit, each row is printed as ``header: value`` lines;
- ``--format md`` prints the table as Markdown, ``csv`` and ``json`` print data alone on stdout, for scripts.

Lines for people go to stdout beside a table, to stderr beside csv or json; ``written: <path>`` lines, which say
where files went, go to stderr always (:func:`written`), so stdout holds the data alone in every format.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from bench.cli.shared import console, err_console
from bench.table_columns import Keep, is_grouping, keep_of, wraps

if TYPE_CHECKING:  # pandas is imported where a table is printed: `bench --help` should not wait for it
    import pandas as pd

PIPE_WIDTH = 100_000  # wide enough for any table: a piped table is never wrapped or cut
PROSE_WIDTH = 20  # the narrowest a column of prose is shown at in a narrow terminal
PROSE_ROOM = 40  # the width an answer column of prose gets before other columns come back


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


def written(what: str) -> None:
    """``written: <what>`` on stderr, in every format: stdout holds the data alone, whatever is piped where."""
    err_console.print(escape(f"written: {what}"), soft_wrap=True, highlight=False)


def show(
    table: Table, fmt: Format = Format.table, data: pd.DataFrame | None = None, out: Console | None = None
) -> None:
    """Print ``table`` in ``fmt``; csv and json print ``data`` (numeric) where given, else the table's cells (its
    grouping columns included)."""
    out = out or console
    if fmt in (Format.csv, Format.json):
        print_data(table_frame(table) if data is None else data, fmt)
    elif fmt == Format.md:
        out.file.write(markdown(_without_grouping(table)) + "\n")
    elif not out.is_terminal:
        whole = copy.copy(table)  # one line per row: prose is not wrapped either
        whole.columns = [dataclasses.replace(c, max_width=None) for c in table.columns]
        Console(file=out.file, width=PIPE_WIDTH, color_system=None).print(whole)
    else:
        fit(_without_grouping(table), out)


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
    """The table within the terminal's width, every cell whole: the columns worth most, else one block per row.

    A table wider than the terminal is drawn compact (no vertical lines, two spaces between columns) with its
    answer columns (:class:`~bench.table_columns.Keep`); where even they do not fit, it is printed one block per
    row. Each column gets a fixed width (rich's own squeezing would cut cells): its need, then room for answer
    columns of prose (a noise note) to wrap less, up to :data:`PROSE_ROOM`; then the other columns come back
    where they fit, figures before descriptive ones, leftmost first; what is left goes column by column up to each
    one's natural width. A line names the columns left out.
    """
    needs = [_column_width(c) for c in table.columns]
    natural = [max(n, _natural_width(c)) for n, c in zip(needs, table.columns, strict=True)]
    if _table_width(table, natural) <= out.width:
        out.print(table)
        return
    narrow = copy.copy(table)
    narrow.box, narrow.show_edge, narrow.pad_edge, narrow.collapse_padding = box.SIMPLE_HEAD, False, False, True
    widths = {i: needs[i] for i, c in enumerate(table.columns) if keep_of(c) == Keep.ANSWER}
    if _table_width(narrow, list(widths.values())) > out.width:
        _vertical(table, out)
        return

    def grow(columns: list[int], up_to: list[int]) -> None:
        for i in columns:
            spare = out.width - _table_width(narrow, list(widths.values()))
            widths[i] += max(0, min(spare, up_to[i] - widths[i]))

    prose = [i for i in widths if wraps(table.columns[i])]
    grow(prose, [min(n, PROSE_ROOM) for n in natural])
    for i in sorted(set(range(len(needs))) - set(widths), key=lambda i: (-keep_of(table.columns[i]), i)):
        if _table_width(narrow, [*widths.values(), needs[i]]) <= out.width:
            widths[i] = needs[i]
    widths = dict(sorted(widths.items()))
    if len(widths) < min(3, len(needs)):  # a row label and a figure or two at least
        _vertical(table, out)
        return
    grow(list(widths), natural)
    narrow.columns = [
        dataclasses.replace(table.columns[i], width=w, header=_wrap_header(table.columns[i].header, w), _index=n)
        for n, (i, w) in enumerate(widths.items())  # rich pads a column by its _index
    ]
    out.print(narrow)
    if len(widths) < len(needs):
        left_out = ", ".join(_plain(c.header) for i, c in enumerate(table.columns) if i not in widths)
        out.print(
            f"[dim]not shown at {out.width} columns: {escape(left_out)} (widen the terminal, or --format md)[/]",
            highlight=False,
        )


def _without_grouping(table: Table) -> Table:
    """The table without its grouping columns, which its title names: what a terminal and Markdown show."""
    if not any(is_grouping(c) for c in table.columns):
        return table
    shown = copy.copy(table)
    shown.columns = [
        dataclasses.replace(c, _index=n) for n, c in enumerate(c for c in table.columns if not is_grouping(c))
    ]
    return shown


def _wrap_header(header: object, width: int) -> str:
    """``header`` broken into lines of at most ``width``, at spaces and after underscores (a metric's name
    is one long word: ``balanced_`` / ``accuracy``)."""
    lines: list[str] = []
    for word in _header_words(_plain(header)):
        glue = "" if lines and lines[-1].endswith("_") else " "
        if lines and cell_len(lines[-1] + glue + word) <= width:
            lines[-1] += glue + word
        else:
            lines.append(word)
    return "\n".join(lines)


def _header_words(header: str) -> list[str]:
    """Where a header may break: at spaces, and after an underscore."""
    return re.findall(r"[^\s_]*_+|[^\s_]+", header)


def _table_width(table: Table, widths: list[int]) -> int:
    """Characters a row takes with these column widths: cells, their padding, and the box's lines."""
    n = len(widths)
    if not n:
        return 0
    _, right, _, left = table.padding
    pads = [left + right] * n
    if table.collapse_padding:  # a column's left padding overlaps the right padding of the one before it
        pads = [pads[0]] + [max(0, left - right) + right] * (n - 1)
    if not table.pad_edge:
        pads[0] -= left
        pads[-1] -= right
    edges = (n - 1 + (2 if table.show_edge else 0)) if table.box else 0
    return sum(widths) + sum(pads) + edges


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

    A column of prose (:func:`bench.table_columns.wraps`) wraps at words: it needs its longest word and room for
    a few more (up to ``PROSE_WIDTH``), and takes up to its ``max_width`` where there is room.
    """
    text = [_plain(cell) for cell in column.cells]
    if wraps(column):
        words = [cell_len(word) for cell in text for word in cell.split()]
        widest = max([cell_len(c) for c in text], default=1)
        cells = [min(PROSE_WIDTH, column.max_width or widest, widest), *words]
    else:
        cells = [cell_len(line) for cell in text for line in cell.splitlines() or [""]]
    header = [cell_len(word) for word in _header_words(_plain(column.header))]
    return max([*cells, *header, column.min_width or 0, 1])


def _plain(value: object) -> str:
    if isinstance(value, Text):
        return value.plain
    return Text.from_markup(value).plain if isinstance(value, str) else str(value)
