"""A protocol's search, run: one Optuna study per experiment, resumable, shareable, never reading the test split.

Each experiment (backbone x dataset x protocol x resolution x precision: the seeds of one leaderboard row) gets
one study, named by its experiment id, so every seed trains the same chosen setting and a changed experiment
starts a new study. The study's trials are the protocol's design (:meth:`bench.protocol.search.Search.design`),
enqueued once by whoever creates the study; any process that runs a seed of the row takes waiting trials until
none is left, then waits for the trials other processes are running, then reads the best. So:

- **a killed search resumes** with the same study: its storage is an SQLite file in the results folder
  (``search/<study>.db``) unless ``--search-storage`` names another; a trial that was running when its process
  died stops sending heartbeats, is failed after :data:`GRACE_S` and enqueued again with the same setting; one that
  its process failed on the way out (Ctrl-C, ``timeout``'s SIGTERM, an error: Optuna records those as failed, with
  no retry) is enqueued again by the next process to open the study (:func:`_requeue_failed`);
- **many machines share one study** through an RDB URL (``postgresql+psycopg://...``): the URL is the only
  change, as Optuna intends;
- **pruning** (successive halving or Hyperband over epochs) reads each trial's best validation score so far
  after every epoch; a trial whose training loss diverges is pruned and says so.

The trials see the train and validation splits only: the runner's ``train_trial`` builds a fresh model and calls
:func:`bench.train.loop.fit`, which has no parameter for test data. Every trial is kept in the record
(:class:`SearchSummary`); the chosen values are results, not part of the run's identity.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna

from bench.errors import BenchError, ConfigError
from bench.protocol.search import Range, Search
from bench.protocol.spec import Protocol
from bench.runs.trials import SearchSummary, TrialSummary
from bench.train.events import EpochEnded, Event, ProgressFn
from bench.train.loop import DivergedError, FitResult
from bench.train.selection import epoch_score, higher_is_better

HEARTBEAT_S = 20  # how often a running trial says it is alive
GRACE_S = 60  # a trial silent for this long belongs to a dead process: failed, and its setting enqueued again
POLL_S = 5.0  # how often a process waiting for other processes' trials looks again
DESIGN_WAIT_S = 120.0  # how long a process that found the study waits for its creator to enqueue the design

TrainTrial = Callable[[Protocol, str, ProgressFn], FitResult]
"""Trains a fresh model under a trial's protocol on train/val (the ``str`` says which trial, for progress)."""


class SearchError(BenchError):
    """The search left nothing to choose (every trial diverged, or the study is unusable): the run fails."""


def study_name(dataset: str, backbone: str, protocol: str, experiment: str) -> str:
    """Readable first, unique by the experiment id (the seeds of one row share it)."""
    return f"{dataset}-{backbone}-{Path(protocol).stem}-{experiment[:12]}"


def storage_url(storage: str | None, results_dir: Path, study: str) -> tuple[str, str]:
    """The URL to open and the form a record shows: the default is ``search/<study>.db`` in the results folder."""
    if storage is None:
        path = results_dir / "search" / f"{study}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path.resolve()}", f"search/{path.name}"
    return storage, shown_url(storage)


def shown_url(storage: str) -> str:
    """``storage`` as records and messages show it, without its password; a ConfigError if it is not a URL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(storage).render_as_string(hide_password=True)
    except ArgumentError:
        example = "sqlite:///file.db, postgresql+psycopg://user@host/db"
        raise ConfigError(f"--search-storage {storage!r} is not a database URL ({example})") from None


def run_search(
    search: Search,
    protocol: Protocol,
    study: str,
    storage: str,
    shown: str,
    train_trial: TrainTrial,
    progress: ProgressFn | None = None,
) -> SearchSummary:
    """Run (or join, or read) ``study`` until every trial of the design has ended; the summary with the best.

    ``protocol`` is the declared one (its epochs as the run has them); each trial trains it with
    ``search.epochs`` and the trial's values (:meth:`bench.protocol.spec.Protocol.tuned`).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    maximize = higher_is_better(protocol.select_on)
    handle = _open(search, study, storage, "maximize" if maximize else "minimize")
    base = protocol.with_epochs(search.epochs)
    objective = _objective(search, base, train_trial, progress)
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(handle)  # a dead process's trial goes back to the queue
        _requeue_failed(handle)
        states = [t.state for t in handle.get_trials(deepcopy=False)]
        if optuna.trial.TrialState.WAITING in states:
            handle.optimize(objective, n_trials=1, catch=(_NotInDesign,))
        elif optuna.trial.TrialState.RUNNING in states:
            time.sleep(POLL_S)  # another process runs it: its result may be the best
        else:
            break
    return _summary(handle, study, shown, protocol.select_on, maximize)


def _requeue_failed(handle: optuna.Study) -> None:
    """Enqueue again each design setting whose every trial failed: one an interrupted process left failed.

    Without it a search stopped by Ctrl-C or a deadline resumed with a setting fewer, and chose among the rest:
    another choice than the uninterrupted search's. A diverged trial is pruned, not failed, so it is not retried.
    """
    live = {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    live |= {optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING}
    trials = handle.get_trials(deepcopy=False)
    covered = {t.user_attrs["design"] for t in trials if "design" in t.user_attrs and t.state in live}
    failed = {t.user_attrs["design"] for t in trials if "design" in t.user_attrs} - covered
    for index in sorted(failed):
        handle.enqueue_trial(handle.user_attrs["design"][index], user_attrs={"design": index})


class _NotInDesign(Exception):
    """A trial that another process's pop left this one with no design setting for: failed, and ignored."""


def _open(search: Search, study: str, storage: str, direction: str) -> optuna.Study:
    """The study, created with its design enqueued, or found (waiting for its creator to finish enqueuing)."""
    rdb = _storage(storage)
    pruner = _pruner(search)
    design = search.design()
    try:
        handle = optuna.create_study(storage=rdb, study_name=study, direction=direction, pruner=pruner)
    except optuna.exceptions.DuplicatedStudyError:
        return _found(optuna.load_study(storage=rdb, study_name=study, pruner=pruner), design, study)
    for index, params in enumerate(design):
        handle.enqueue_trial(params, user_attrs={"design": index})
    handle.set_user_attr("design", design)
    return handle


def _storage(url: str, attempts: int = 3) -> optuna.storages.RDBStorage:
    """Optuna's storage at ``url``, with heartbeats; processes that meet a fresh database each try to create its
    tables, and all but one lose that race (PostgreSQL: a duplicate type): those try again once it is made."""
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
                )
        except (IntegrityError, ProgrammingError):
            attempt += 1
            if attempt == attempts:
                raise
        time.sleep(float(attempt))


def _found(handle: optuna.Study, design: list[dict[str, float | int]], study: str) -> optuna.Study:
    """A study another process created: once its design is enqueued, and only if it is this protocol's design."""
    deadline = time.monotonic() + DESIGN_WAIT_S
    while "design" not in handle.user_attrs:
        if time.monotonic() > deadline:
            raise SearchError(f"study {study!r} has no design after {DESIGN_WAIT_S:.0f} s: delete it and rerun")
        time.sleep(1.0)
    if handle.user_attrs["design"] != design:
        raise SearchError(f"study {study!r} holds another design than this protocol's: delete it and rerun")
    return handle


def _pruner(search: Search) -> optuna.pruners.BasePruner:
    if search.pruner == "none":
        return optuna.pruners.NopPruner()
    if search.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=search.min_epochs, reduction_factor=search.reduction_factor)
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=search.min_epochs, reduction_factor=search.reduction_factor
    )


def _objective(
    search: Search, base: Protocol, train_trial: TrainTrial, progress: ProgressFn | None
) -> Callable[[optuna.Trial], float]:
    def objective(trial: optuna.Trial) -> float:
        if "design" not in trial.user_attrs:
            raise _NotInDesign
        params = {name: _suggest(trial, name, dim) for name, dim in search.space.items()}
        maximize = higher_is_better(base.select_on)
        best = -math.inf if maximize else math.inf

        def on_event(event: Event) -> None:
            nonlocal best
            if progress is not None:
                progress(event)
            if not isinstance(event, EpochEnded):
                return
            log = event.log
            score = epoch_score(log.val_loss, log.val, base.select_on)
            best = max(best, score) if maximize else min(best, score)
            trial.report(best, log.epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {log.epoch}")

        label = f"trial {trial.number + 1}/{search.trials}"
        try:
            fitted = train_trial(base.tuned(params), label, on_event)
        except DivergedError as err:
            trial.set_user_attr("note", f"diverged: {err}")
            raise optuna.TrialPruned(str(err)) from None
        trial.set_user_attr("epochs", len(fitted.history))
        return fitted.best_score

    return objective


def _suggest(trial: optuna.Trial, name: str, dim: Range | tuple[int, ...]) -> float | int:
    """The trial's value of ``name``: the enqueued design value, declared with its distribution for Optuna."""
    if isinstance(dim, Range):
        return trial.suggest_float(name, dim.low, dim.high, log=dim.log)
    return trial.suggest_categorical(name, list(dim))


def _summary(handle: optuna.Study, study: str, shown: str, metric: str, maximize: bool) -> SearchSummary:
    states = optuna.trial.TrialState
    trials = [t for t in handle.get_trials(deepcopy=False) if "design" in t.user_attrs]
    kept = [
        TrialSummary(
            number=t.number,
            params=dict(t.params),
            state=t.state.name.lower(),
            value=_value(t),
            epochs=int(t.user_attrs.get("epochs", len(t.intermediate_values))),
            seconds=t.duration.total_seconds() if t.duration is not None else None,
            note=t.user_attrs.get("note"),
        )
        for t in trials
    ]
    complete = [t for t in kept if t.state == states.COMPLETE.name.lower() and t.value is not None]
    if not complete:
        raise SearchError(f"study {study!r}: no trial completed ({len(kept)} pruned, diverged or failed)")
    best = sorted(complete, key=lambda t: (-t.value if maximize else t.value, t.number))[0]  # type: ignore[operator]
    return SearchSummary(study, shown, metric, dict(best.params), best.number, float(best.value), kept)  # type: ignore[arg-type]


def _value(trial: optuna.trial.FrozenTrial) -> float | None:
    if trial.value is not None:
        return float(trial.value)
    if trial.intermediate_values:  # pruned: its score when it was stopped
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return None
