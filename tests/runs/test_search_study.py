"""A protocol's search, run: on train/val only, once per experiment, resumed after a death, shared for real."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import torch
from factories import metric_values

import bench.runs.runner
import bench.runs.search
import bench.train.loop
from bench.protocol.search import Range, Search
from bench.protocol.spec import get_protocol
from bench.runs.runner import run
from bench.runs.search import run_search
from bench.runs.spec import RunSpec
from bench.train.events import EpochEnded
from bench.train.history import EpochLog
from bench.train.loop import DivergedError, FitResult

CPU = torch.device("cpu")
SEARCHED = """name = "searched"
pretrained = false
select_on = "balanced_accuracy"
early_stopping_patience = false
[[phases]]
name = "full"
epochs = 2
lr = 1e-3
trainable = 1.0
[search]
trials = 3
epochs = 2
min_epochs = 1
lr = { low = 1e-4, high = 1e-2 }
"""


@pytest.fixture
def searched(project):
    (project / "protocols" / "searched.toml").write_text(SEARCHED)
    return RunSpec(backbone="test_resnet", dataset="tiny", protocol="searched", seed=0)


def test_a_searched_run_tries_the_design_on_validation_then_trains_the_best(searched, tmp_path, monkeypatch):
    calls = []
    real = bench.train.loop.predict

    def recording(model, split, *args, **kwargs):
        calls.append(split.ids[0].split("/")[0])
        return real(model, split, *args, **kwargs)

    monkeypatch.setattr(bench.train.loop, "predict", recording)
    monkeypatch.setattr(bench.runs.runner, "predict", recording)
    record = run(searched, tmp_path / "results", CPU)
    assert record.status == "ok", record.error
    found = record.search
    design = get_protocol("searched").search.design()
    assert [t.params for t in found.trials] == design
    complete = [t for t in found.trials if t.state == "complete"]
    best = max(complete, key=lambda t: (t.value, -t.number))
    assert (found.chosen, found.best_trial, found.best_value) == (best.params, best.number, best.value)
    assert record.protocol.phases[0].lr == pytest.approx(found.chosen["lr"])
    assert (tmp_path / "results" / found.storage).is_file() and "search" in record.timings_s
    # up to 3 trials x 2 epochs of validation, then the run's 2 epochs, its selected model, and test once, last
    assert calls.count("test") == 1 and calls[-1] == "test" and set(calls[:-1]) == {"val"}, calls


def test_every_seed_of_the_row_reads_the_one_study(searched, tmp_path, monkeypatch):
    first = run(searched, tmp_path / "results", CPU)
    trained = []
    monkeypatch.setattr(bench.runs.search, "_objective", lambda *a: lambda trial: trained.append(trial) or 0.0)
    second = run(RunSpec(**{**vars(searched), "seed": 1}), tmp_path / "results", CPU)
    assert second.status == "ok" and trained == []  # no trial ran again
    assert second.search == first.search and second.experiment == first.experiment and second.key != first.key


def _fake_trial(scores: dict[float, float], sleep_s: float = 0.0):
    """A trainer whose validation score is a function of the learning rate: fast, and the same in any process."""

    def train(protocol, label, on_event):
        lr = protocol.phases[0].lr
        result = FitResult()
        for epoch in range(1, sum(p.epochs for p in protocol.phases) + 1):
            time.sleep(sleep_s)
            if scores.get(lr) == "diverge":
                raise DivergedError("loss became nan")
            val = metric_values({"balanced_accuracy": scores.get(lr, 0.5) * epoch / 4}, ("a", "b"))
            log = EpochLog("full", epoch, lr, 0.5, 0.5, val, 0.0)
            result.history.append(log)
            on_event(EpochEnded(log))
            result.best_score, result.best_epoch = log.val.score("balanced_accuracy"), epoch
        return result

    return train


SEARCH = Search(trials=4, epochs=4, pruner="none", lr=Range(1e-4, 1e-2))


def _protocol(search: Search = SEARCH):
    return dataclasses.replace(get_protocol("fair"), search=search)


def test_a_diverged_trial_is_pruned_with_a_note_and_the_best_complete_one_wins(tmp_path):
    design = SEARCH.design()
    scores = {design[0]["lr"]: "diverge", design[1]["lr"]: 0.9, design[2]["lr"]: 0.7}
    url = f"sqlite:///{tmp_path / 's.db'}"
    found = run_search(SEARCH, _protocol(), "s", url, "s.db", _fake_trial(scores))
    assert found.trials[0].state == "pruned" and found.trials[0].note.startswith("diverged")
    assert found.chosen == design[1] and found.best_value == pytest.approx(0.9)


def test_a_trial_whose_process_died_is_retried_with_the_same_setting(tmp_path, monkeypatch):
    """A process killed mid-trial leaves it running in the study; its heartbeat stops, and the next process to
    open the study fails it after the grace period and runs the same setting again."""
    monkeypatch.setattr(bench.runs.search, "HEARTBEAT_S", 1)
    monkeypatch.setattr(bench.runs.search, "GRACE_S", 1)
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = bench.runs.search._open(SEARCH, "s", url, "maximize")
    dead = study.ask()  # popped from the design's queue, as a process that then died would have
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    found = run_search(SEARCH, _protocol(), "s", url, "s.db", _fake_trial({}))
    states = {t.number: t.state for t in found.trials}
    assert states[dead.number] == "fail"
    finished = [t.params for t in found.trials if t.state == "complete"]
    assert sorted(finished, key=str) == sorted(SEARCH.design(), key=str)  # every setting, the dead one included


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, RuntimeError])
def test_a_trial_its_process_failed_on_the_way_out_is_run_again_on_resume(tmp_path, interrupt):
    """Ctrl-C, a deadline's SIGTERM or an error mid-trial: Optuna records the trial failed and no heartbeat retries
    it. The resumed search runs that setting again and chooses what the uninterrupted search chose."""
    design = SEARCH.design()
    scores = {d["lr"]: 0.5 + 0.1 * i for i, d in enumerate(design)}  # the last setting is the best
    url = f"sqlite:///{tmp_path / 's.db'}"
    uninterrupted = run_search(SEARCH, _protocol(), "u", f"sqlite:///{tmp_path / 'u.db'}", "u.db", _fake_trial(scores))
    good = _fake_trial(scores)

    def stopped_at_the_last(protocol, label, on_event):
        if protocol.phases[0].lr == design[-1]["lr"]:
            raise interrupt("stopped mid-trial")
        return good(protocol, label, on_event)

    with pytest.raises(interrupt):
        run_search(SEARCH, _protocol(), "s", url, "s.db", stopped_at_the_last)
    resumed = run_search(SEARCH, _protocol(), "s", url, "s.db", good)
    assert [t.state for t in resumed.trials] == ["complete"] * (len(design) - 1) + ["fail", "complete"]
    assert resumed.chosen == uninterrupted.chosen == design[-1]
    assert resumed.best_value == pytest.approx(uninterrupted.best_value)


# ----------------------------------------------------------------------------- a study shared through PostgreSQL


def _pg_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found is None:
        for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
            if (folder / name).exists():
                return str(folder / name)
    return found


@pytest.fixture(scope="module")
def postgres_url():
    """A real PostgreSQL server for this module, started from the machine's binaries (`.ci/run` installs them)."""
    initdb, pg_ctl = _pg_tool("initdb"), _pg_tool("pg_ctl")
    if initdb is None or pg_ctl is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL's initdb/pg_ctl are missing: .ci/run installs them (apt-get install postgresql)")
        pytest.skip("no PostgreSQL server binaries here (apt-get install postgresql)")
    folder = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    folder.chmod(0o755)
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "bench"], check=True, capture_output=True)
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1"
    start = [*as_user, pg_ctl, "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "start"]
    subprocess.run(start, check=True, stdout=subprocess.DEVNULL)  # the server keeps no pipe of ours open
    try:
        yield f"postgresql+psycopg://bench@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)


def _join(url: str, scores: dict, out) -> None:
    """One machine of the shared study: a separate process that knows only the URL."""
    trained = []
    fake = _fake_trial(scores, sleep_s=0.5)

    def train(protocol, label, on_event):
        trained.append(protocol.phases[0].lr)
        return fake(protocol, label, on_event)

    found = run_search(SEARCH, _protocol(), "shared", url, url, train)
    out.put((trained, found.chosen, [(t.number, t.state) for t in found.trials]))


def test_two_processes_share_one_study_through_a_real_postgresql_server(postgres_url):
    design = SEARCH.design()
    scores = {p["lr"]: s for p, s in zip(design, (0.6, 0.8, 0.95, 0.7), strict=True)}
    context = multiprocessing.get_context("fork")  # the children need only Optuna, and the test's fake trainer
    out = context.Queue()
    workers = [context.Process(target=_join, args=(postgres_url, scores, out)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    results = [out.get(timeout=5) for _ in workers]
    assert [r[1] for r in results] == [design[2], design[2]]  # both chose the one best setting
    assert results[0][2] == results[1][2]  # and saw the same trials
    study = optuna.load_study(storage=postgres_url, study_name="shared")
    ran = sorted((t.params["lr"], t.state.name) for t in study.trials if "design" in t.user_attrs)
    assert ran == sorted((p["lr"], "COMPLETE") for p in design)  # each setting exactly once, by either process
    assert all(r[0] for r in results)  # both processes trained some of them
