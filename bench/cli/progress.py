"""Live progress of a sweep: one bar per run (phase, epoch, losses) and, for ``bench run``, an overall bar."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bench.cli.output import PIPE_WIDTH
from bench.cli.shared import console
from bench.train.events import EpochEnded, Event, ProgressFn, Stage, Started, Stepped

if TYPE_CHECKING:  # the runs layer imports torch: `bench --help` should not wait for it
    from bench.runs.planned import PlannedRun
    from bench.runs.record import RunRecord


class SweepBars:
    """The bars of one sweep; :meth:`started` is the executors' progress factory, :meth:`finished` takes records."""

    def __init__(self, progress: Progress, total: int | None, finished_before: int, todo: int, lines: bool) -> None:
        self.progress = progress
        self.todo = todo
        self.lines = lines
        self.tasks: dict[str, object] = {}
        self.done = self.failed = self.skipped = 0  # failed: failed or unfinished; skipped: another process has it
        self.overall = (
            None
            if total is None
            else progress.add_task("sweep", total=total, completed=finished_before, info=self._counts())
        )

    def _counts(self) -> str:
        running = len(self.tasks) - self.done - self.failed - self.skipped
        return f"{self.done} done, {running} running, {self.failed} failed, {self.todo - len(self.tasks)} queued"

    def _update_overall(self, advance: int = 0) -> None:
        if self.overall is not None:
            self.progress.update(self.overall, advance=advance, info=self._counts())

    def started(self, item: PlannedRun) -> ProgressFn:
        self.tasks[item.key] = self.progress.add_task(item.label, total=None, info="loading data")
        self._update_overall()
        return _run_callback(self.progress, self.tasks[item.key])

    def finished(self, record: RunRecord) -> None:
        task = self.tasks[record.key]
        error = f": {record.error}" if record.error else ""
        if self.lines:  # several at once: a finished run leaves one line, so only running runs keep a bar
            self.progress.remove_task(task)
            seconds = sum(record.timings_s.values())
            self.progress.console.print(
                f"{record.status}: {record.label} in {seconds:.0f} s{error}", soft_wrap=True, markup=False
            )
        else:
            self.progress.update(task, info=record.status + error)
            self.progress.stop_task(task)
        self.failed += record.status in ("failed", "unfinished")
        self.done += record.ok
        self.skipped += record.status == "skipped"
        self._update_overall(advance=1)


def _whole_lines(target: Console) -> Console:
    """``target``, or where it is no terminal (a pipe, a log file) a console as wide as a piped table: rich draws
    the bars once at the end there, and at its default 80 columns it would cut the run names a log is grepped
    for (``chest_xray/tf_efficientnet_lite0/staged/…``)."""
    return target if target.is_terminal else Console(file=target.file, width=PIPE_WIDTH, color_system=None)


@contextmanager
def sweep_bars(
    todo: int,
    total: int | None = None,
    finished_before: int = 0,
    out: Console | None = None,
    lines: bool = False,
) -> Iterator[SweepBars]:
    """Bars for ``todo`` runs on ``out`` (default stdout); with ``total``, an overall bar that starts at
    ``finished_before``.

    ``lines`` (several runs at once): each finished run is a printed line instead of a bar kept to the end,
    so the live part stays as tall as the runs in progress and a log or ``grep`` gets one line per run.
    """
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_whole_lines(out or console),
        transient=False,
    )
    with progress:
        yield SweepBars(progress, total, finished_before, todo, lines)


def _run_callback(progress: Progress, task) -> ProgressFn:
    """A run's bar: the phase and epoch, the last step's training loss, the last epoch's validation figures, and
    what the run does once its steps are done (evaluating, evaluation sets, latency), so the bar never stalls."""
    state = {"phase": "", "what": "", "loss": "", "val": ""}

    def info() -> str:
        return " ".join(part for part in (state["what"], state["phase"], state["loss"], state["val"]) if part)

    def callback(event: Event) -> None:
        if isinstance(event, Started):  # a run's training, or one trial of its search before it
            state.update(what="" if event.what == "training" else event.what, phase="", loss="", val="")
            progress.update(task, total=event.total_steps, completed=0, info=info() or "training")
            progress.start_task(task)
        elif isinstance(event, Stepped):
            state["phase"] = f"{event.phase} ep {event.epoch}"
            if event.loss is not None:
                state["loss"] = f"loss {event.loss:.3f}"
            progress.update(task, advance=1, info=info())
        elif isinstance(event, EpochEnded):
            log = event.log
            state["val"] = f"val loss {log.val_loss:.3f} bal.acc {log.val.score('balanced_accuracy'):.3f}"
            progress.update(task, info=info())
        elif isinstance(event, Stage):
            progress.update(task, info=f"{event.name} {state['val']}".strip())
            progress.start_task(task)  # loading data, searching: before training's bar starts (again: a no-op)

    return callback
