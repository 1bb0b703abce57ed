"""``bench leakage``: are a target's val/test images in a source's training data (before transferring from it)?"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from bench.cli.output import written
from bench.cli.shared import console
from bench.files import atomic_write_bytes


def leakage(
    source: Annotated[str, typer.Argument(help="Dataset the source run trains on.")],
    target: Annotated[str, typer.Argument(help="Dataset the transferred run is tested on.")],
    write_source: Annotated[
        Path | None,
        typer.Option(
            help="Write SOURCE's metadata CSV without every lesion that has an image in TARGET (metadata-CSV "
            "datasets): the table of a clean source entry."
        ),
    ] = None,
) -> None:
    """Compare TARGET's val/test images with SOURCE's train/val images (exact at 32 px, dHash, lesion id).

    Exit status 1 when any overlap. Example: bench leakage ham10000 isic
    """
    from bench.data.leakage import check_overlap, without_overlap

    overlap = check_overlap(source, target)
    console.print(escape(overlap.summary()), highlight=False, soft_wrap=True)
    if write_source is not None:
        table = without_overlap(source, target)
        atomic_write_bytes(write_source, table.to_csv(index=False).encode())  # whole, or one line naming it
        written(f"{write_source}: {len(table)} rows")
    if overlap.count:
        sys.exit(1)
