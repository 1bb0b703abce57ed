"""``bench compare``: is backbone A better than B on one dataset, from stored records (no training)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.table import Table

from bench.cli.options import results_folder
from bench.cli.output import Format, FormatOption, message, print_data, show
from bench.cli.shared import ResultsDir, stored_records
from bench.evaluation.metrics import METRIC_NAMES
from bench.paths import WORKING_RESULTS
from bench.table_columns import Keep, add_column


def compare(
    a: Annotated[str, typer.Argument(help="First backbone.")],
    b: Annotated[str, typer.Argument(help="Second backbone.")],
    dataset: Annotated[str, typer.Option(help="Dataset both were tested on.")],
    metric: Annotated[str, typer.Option(help=f"One of {', '.join(METRIC_NAMES)}.")] = "balanced_accuracy",
    protocol: Annotated[str | None, typer.Option(help="Protocol of A (and of B unless --protocol-b).")] = None,
    protocol_b: Annotated[str | None, typer.Option(help="Protocol of B, when it differs from A's.")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    results_dir: ResultsDir = WORKING_RESULTS,
    fmt: FormatOption = Format.table,
) -> None:
    """Is A better than B? Paired bootstrap over the same test images (seed-averaged) and McNemar per seed.

    csv and json print one row per test (the bootstrap, then McNemar per seed) and nothing else on stdout.

    Example: bench compare resnet18 efficientnet_b0 --dataset pneumoniamnist --metric auc --format json
    """
    from bench.reports.compare import compare_backbones
    from bench.runs.record import load_records

    result = compare_backbones(
        load_records(results_dir), dataset, a, b, metric, protocol, protocol_b or protocol, n_resamples=resamples
    )
    if fmt in (Format.csv, Format.json):
        print_data(result.frame(), fmt)
        return
    p = result.paired
    # the same backbone under two protocols (a transfer against scratch) is told apart by its protocol
    la, lb = (f"{a} ({result.a.protocol})", f"{b} ({result.b.protocol})") if a == b else (a, b)
    table = Table(title=f"{a} vs {b} on {dataset}: {metric} (paired bootstrap, {p.n_resamples} resamples)")
    add_column(table, "dataset", Keep.ANSWER, grouping=True)  # piped, each line says which dataset
    columns = {"backbone": Keep.ANSWER, "protocol": Keep.FIGURE, "seeds": Keep.DETAIL, metric: Keep.ANSWER}
    for col, keep in columns.items():
        add_column(table, col, keep)
    for side, score in ((result.a, p.score_a), (result.b, p.score_b)):
        table.add_row(dataset, side.backbone, side.protocol, ",".join(map(str, side.seeds)), f"{score:.4f}")
    show(table, fmt)
    if result.mcnemar_by_seed:
        mc = Table(title=f"McNemar's exact test on accuracy, per seed: {la} vs {lb} on {dataset}", header_style="bold")
        add_column(mc, "dataset", Keep.ANSWER, grouping=True)
        for col in ("seed", f"only {la} right", f"only {lb} right", "p"):
            add_column(mc, col, Keep.ANSWER, justify="right")
        for s, t in result.mcnemar_by_seed.items():
            mc.add_row(dataset, str(s), str(t.only_a_correct), str(t.only_b_correct), f"{t.p_value:.4g}")
        show(mc, fmt)
    verdict = "significant" if result.significant else "not significant"
    skipped = f" ({p.n_skipped} undefined resamples skipped)" if p.n_skipped else ""
    message(
        f"difference {la} - {lb} = {p.difference:+.4f}, {100 * p.confidence:.0f}% CI [{p.low:+.4f}, {p.high:+.4f}], "
        f"p = {p.p_value:.4g}: {verdict} at {1 - p.confidence:.2f}{skipped}",
        fmt,
    )


def agreement(
    baseline: Annotated[
        Path, typer.Argument(help="Results folder of the reference runs.", metavar="BASELINE", parser=results_folder)
    ],
    candidate: Annotated[
        Path,
        typer.Argument(
            help="Results folder of the same experiments rerun.", metavar="CANDIDATE", parser=results_folder
        ),
    ],
    dataset: Annotated[str | None, typer.Option(help="Only this dataset's rows.")] = None,
    metric: Annotated[str, typer.Option(help=f"One of {', '.join(METRIC_NAMES)}.")] = "balanced_accuracy",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 2000,
    fmt: FormatOption = Format.table,
) -> None:
    """Did a rerun move the numbers? The same experiments in two results folders (another CPU engine or
    precision, other versions, another machine), paired by seed: per row both seed means, the difference, the
    baseline's seed spread, a paired bootstrap over the shared test images, the largest change of a test probability
    (max Δp; 0 where bit-identical) and the training time per epoch (seed median; candidate over baseline).

    A row agrees when its difference is within the baseline's seed spread. Only the precision may differ between
    the two sides of a row (bf16 is its own run key; the memory format is in no key).

    Example: bench agreement results/mission results/isic-engine --dataset isic
    """
    from bench.reports.agreement import agreement as agree

    result = agree(stored_records(baseline), stored_records(candidate), metric, dataset, n_resamples=resamples)
    frame = result.frame()
    if fmt in (Format.csv, Format.json):
        print_data(frame, fmt)
    else:  # a table per dataset, named in its title (piped, the grouping column names it on every line)
        for name, rows in frame.groupby("dataset", sort=False):
            title = f"{candidate} against {baseline} on {name}: test {metric}, paired by seed"
            show(_agreement_table(rows, title), fmt)
    counts = ", ".join(f"{n} {verdict}" for verdict, n in result.counts().items() if n)
    message(
        f"{len(result.rows)} rows: {counts}; training time per epoch {result.epoch_ratio:.2f}x the baseline's "
        "(candidate over baseline, rows weighted by their cost)",
        fmt,
    )
    if result.unmatched:
        message(f"not in the baseline: {', '.join(result.unmatched)}", fmt)


def _agreement_table(frame: pd.DataFrame, title: str) -> Table:
    """One dataset's rows of ``bench agreement``."""
    table = Table(title=title)
    add_column(table, "dataset", Keep.ANSWER, grouping=True)
    columns = {
        "backbone": Keep.ANSWER,
        "protocol": Keep.DETAIL,
        "engines": Keep.FIGURE,
        "seeds": Keep.DETAIL,
        "baseline": Keep.ANSWER,
        "candidate": Keep.ANSWER,
        "diff": Keep.ANSWER,
        "spread": Keep.ANSWER,
        "95% CI": Keep.FIGURE,
        "verdict": Keep.ANSWER,
        "max Δp": Keep.DETAIL,
        "epoch time": Keep.FIGURE,
    }
    for col, keep in columns.items():
        add_column(
            table, col, keep, justify="left" if col in ("backbone", "protocol", "engines", "verdict") else "right"
        )
    for row in frame.itertuples():
        table.add_row(
            row.dataset,
            row.backbone,
            row.protocol,
            f"{row.engine_baseline} -> {row.engine_candidate}",
            row.seeds,
            f"{row.score_baseline:.3f}",
            f"{row.score_candidate:.3f}",
            f"{row.difference:+.3f}",
            f"{row.spread_baseline:.3f}",
            f"[{row.ci_low:+.3f}, {row.ci_high:+.3f}]",
            row.verdict,
            f"{row.largest_probability_change:.4f}",
            f"{row.epoch_ratio:.2f}x",
        )
    return table
