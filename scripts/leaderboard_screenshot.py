"""The README's terminal screenshot: ``bench leaderboard --results-dir results/mission`` in a 100-column terminal.

The real command runs in a subprocess that is told it writes to a 100-column colour terminal (``TTY_COMPATIBLE``,
``FORCE_COLOR``, ``COLUMNS``), so it fits its tables to 100 columns as it would on screen. Its ANSI output is read
back into a recording rich ``Console(record=True, width=100)`` and saved as SVG. The command prints one table per
dataset (chest_xray, ham10000, isic), each followed by its notes; the screenshot keeps the ISIC one, the dataset the
README's answer starts from: its title, the table, the line naming the columns a 100-column terminal leaves out, and
the files written. The notes in between are left out (the docs page shows them whole, from the Markdown file).

Like any ``bench leaderboard``, it rewrites ``results/mission/leaderboards/{dataset}.md|csv|tex`` from the records;
with the records unchanged those files come out byte for byte as committed (``bench check-readme`` checks that).

    python scripts/leaderboard_screenshot.py             # rewrites docs/assets/leaderboard.svg
    python scripts/leaderboard_screenshot.py --check     # exit 1 if the SVG is not what the command shows today
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "assets" / "leaderboard.svg"
COMMAND = ["bench", "leaderboard", "--results-dir", "results/mission"]
WIDTH = 100
DATASET = "isic"


def terminal_output() -> str:
    """The command's output (ANSI styles kept) as a ``WIDTH``-column colour terminal gets it."""
    env = {**os.environ, "TTY_COMPATIBLE": "1", "FORCE_COLOR": "1", "COLUMNS": str(WIDTH), "LINES": "50"}
    env.pop("NO_COLOR", None)
    bench = shutil.which("bench") or str(Path(sys.executable).with_name("bench"))
    done = subprocess.run([bench, *COMMAND[1:]], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def section(output: str, dataset: str) -> list[str]:
    """The lines of one dataset's table: title and table, then the line naming the columns left out (stdout only:
    the ``written:`` lines go to stderr)."""
    lines = output.splitlines()
    plain = [Text.from_ansi(line).plain for line in lines]
    start = next(i for i, p in enumerate(plain) if p.strip().startswith(f"{dataset}: test split"))
    following = (i for i in range(start + 1, len(plain)) if ": test split, sorted by" in plain[i])
    end = next(following, len(plain))
    # the rows end where the caption starts (a boxed table ends at its bottom rule instead)
    table_end = next(
        i for i in range(start, end) if plain[i].startswith("└") or plain[i + 1].strip().startswith("★ Pareto")
    )
    omitted = [i for i in range(table_end, end) if plain[i].startswith("not shown at ")]
    return lines[start : table_end + 1] + [lines[i] for i in omitted[:1]]


def render(lines: list[str]) -> str:
    console = Console(record=True, width=WIDTH, force_terminal=True, color_system="truecolor", file=io.StringIO())
    prompt = Text("$ ", style="bold green") + Text(" ".join(COMMAND), style="bold")
    console.print(prompt, soft_wrap=True)
    for line in lines:
        console.print(Text.from_ansi(line))  # wrapped at the width, as the terminal wraps a long line
    return console.export_svg(title=" ".join(COMMAND))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed SVG instead of writing it")
    args = parser.parse_args()
    svg = render(section(terminal_output(), DATASET))
    if args.check:
        same = OUT.is_file() and OUT.read_text() == svg
        print(f"{OUT.relative_to(ROOT)} {'is' if same else 'is NOT'} what `{' '.join(COMMAND)}` shows today")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(svg)
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
