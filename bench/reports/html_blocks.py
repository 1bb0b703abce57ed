"""The pieces of the HTML report: escaped text, tables in their own scroll box, and figures shown no smaller than
the size at which their text is readable.

**Figures.** A PNG scaled to the width of a narrow window shrinks its text with it: the trade-off plot's 7-8 pt
legend and caption, drawn at 150 dpi, came out about 7 px high in an 800 px window. So each figure is shown at
the window's width but never narrower than the width at which its smallest text (:data:`FIGURE_TEXT_PT`, the
smallest size the harness's figures draw: legends, phase names, the reliability diagrams' ticks) is
:data:`READABLE_PX` CSS pixels high, computed from the PNG's own size and dpi; a window narrower than that
scrolls the figure sideways inside its own box instead of shrinking it. The page itself never scrolls sideways.

**Tables** sit in a box that scrolls sideways (with a shadow at the edge that has more), so a narrow window
never cuts a column off: ``tests/reports/test_report.py`` scrolls the widest one to its end in headless
Chromium at 800 px and checks that its last column is in view, and that no text on the page or in a figure is
under 12 px.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
from PIL import Image

READABLE_PX = 12
"""The smallest text, in CSS pixels, that the page shows: its own and its figures'."""
FIGURE_TEXT_PT = 7
"""The smallest text the harness's figures draw, in points (legends, phase names, reliability ticks)."""
PNG_DPI = 100.0  # matplotlib's default, for a PNG that does not say


def escape(text: object) -> str:
    return html.escape(str(text))


def png_size(data: bytes) -> tuple[int, int, float]:
    """A PNG's width and height in pixels, and its dpi (:data:`PNG_DPI` where the file does not say)."""
    with Image.open(io.BytesIO(data)) as image:
        dpi = image.info.get("dpi", (PNG_DPI, PNG_DPI))[0]
        return image.width, image.height, float(dpi) or PNG_DPI


def readable_width(width: int, dpi: float) -> int:
    """The CSS width at which a ``width``-pixel figure saved at ``dpi`` shows its smallest text at READABLE_PX."""
    return math.ceil(width * READABLE_PX / (FIGURE_TEXT_PT * dpi / 72))


def figure(path: Path, alt: str, css_class: str = "") -> str:
    """``path`` (a PNG) embedded as a ``data:`` URI in its own sideways-scrolling box: as wide as the box, but never
    narrower than :func:`readable_width` nor wider than that or its own pixels, whichever is more."""
    data = path.read_bytes()
    width, height, dpi = png_size(data)
    least = readable_width(width, dpi)
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<div class="figure"><img class="{escape(css_class)}" alt="{escape(alt)}" width="{width}" height="{height}" '
        f'style="min-width: {least}px; max-width: {max(least, width)}px" src="data:image/png;base64,{encoded}"></div>'
    )


def table(frame: pd.DataFrame, css_class: str, text: Iterable[str] = ()) -> str:
    """``frame`` as an HTML table (cells escaped; the columns named in ``text`` left-aligned, numbers right) in a
    box that scrolls sideways. Headers break after each ``_`` (``<wbr>``): a header such as
    ``balanced_accuracy 95% CI`` wraps at words and underscores, never mid-word, so its column is as narrow as its
    cells."""
    left = [' class="text"' if c in set(text) else "" for c in frame.columns]
    head = "".join(f"<th{a}>{escape(c).replace('_', '_<wbr>')}</th>" for c, a in zip(frame.columns, left, strict=True))
    body = "".join(
        "<tr>" + "".join(f"<td{a}>{escape(_cell(v))}</td>" for v, a in zip(row, left, strict=True)) + "</tr>"
        for row in frame.itertuples(index=False)
    )
    shown = f'<table class="{escape(css_class)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="wide">{shown}</div>'


def _cell(value: object) -> object:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else value


def notes(lines: Iterable[str]) -> str:
    return "\n".join(f'<p class="note">{escape(line)}</p>' for line in lines)


def slug(name: str) -> str:
    """An element id for ``name``: letters, digits, ``-`` and ``_`` kept, anything else ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1800px;
       padding: 0 1rem; color: #222; line-height: 1.4; font-size: 16px; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; }
h3 { margin-top: 1.6rem; }
.sub { color: #555; margin-top: 0; }
.answer li { margin-bottom: 0.6rem; } .answer p { margin: 0.3rem 0; max-width: 75rem; }
nav.contents { font-size: 0.9rem; color: #555; } nav.contents a { margin-right: 0.8rem; white-space: nowrap; }
table { border-collapse: collapse; font-size: 0.8rem; margin: 0.8rem 0; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.35rem; text-align: right; }
th { background: #f2f2f2; white-space: normal; overflow-wrap: break-word; vertical-align: bottom; }
td { white-space: nowrap; font-variant-numeric: tabular-nums; }
table.leaderboard td { font-size: 0.75rem; } table.leaderboard td.text { font-size: 0.8rem; }
td.text, th.text { text-align: left; }
table.leaderboard td:last-child { white-space: normal; min-width: 6rem; }
table.groups td:last-child { white-space: normal; min-width: 16rem; }
table.provenance td, table.provenance th { text-align: left; white-space: normal; }
table.provenance td { overflow-wrap: anywhere; }
.wide, .figure { overflow-x: auto; max-width: 100%; scrollbar-width: thin; scrollbar-color: #aaa #f2f2f2;
  background: linear-gradient(to right, #fff 30%, #fff0) left / 2rem 100% no-repeat local,
    linear-gradient(to left, #fff 30%, #fff0) right / 2rem 100% no-repeat local,
    radial-gradient(farthest-side at 0 50%, #0003, #0000) left / 0.8rem 100% no-repeat scroll,
    radial-gradient(farthest-side at 100% 50%, #0003, #0000) right / 0.8rem 100% no-repeat scroll; }
.wide::-webkit-scrollbar, .figure::-webkit-scrollbar { height: 10px; }
.wide::-webkit-scrollbar-thumb, .figure::-webkit-scrollbar-thumb { background: #aaa; border-radius: 5px; }
.figure img { display: block; width: 100%; height: auto; }
.note { color: #555; font-size: 0.85rem; }
.warning { color: #b00; font-weight: bold; }
.runs figure { margin: 0 0 1.2rem 0; }
.runs .pair { display: flex; flex-wrap: wrap; gap: 0.5rem 1rem; align-items: flex-start; }
.runs .pair .figure { flex: 0 1 auto; }
figcaption, summary { font-size: 0.85rem; color: #555; }
summary { cursor: pointer; margin: 0.6rem 0; }
"""
