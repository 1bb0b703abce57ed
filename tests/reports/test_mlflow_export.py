"""Records logged into a real local MLflow store (SQLite, as the docs recommend; a file store where its handling is
the point), read back through ``MlflowClient``: no mock. A real tracking server: test_mlflow_server.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from factories import add_sex_dataset, make_record, write_run

from bench.errors import ConfigError, ResultsError
from bench.evaluation.eval_results import EXTERNAL_PART, EvalSetResult
from bench.evaluation.scores import TestScores
from bench.reports.export import export
from bench.reports.leaderboard import leaderboard
from bench.reports.mlflow_export import FORMAT_TAG, KEY_TAG, SUMMARY_TAG, curves, log_runs
from bench.reports.mlflow_store import artifact_location, failure, kind, sqlite_file, view_hint
from bench.reports.plots import confusion_figure, curves_figure, plot_all, save
from bench.reports.runs_table import runs_table
from bench.runs.record import load_records, probs_path, save_record

mlflow = pytest.importorskip("mlflow", reason='MLflow is an optional extra: pip install -e ".[mlflow]"')
from mlflow.tracking import MlflowClient  # noqa: E402

LABELS = np.array([0, 1, 1, 0, 1])
PROBS = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]])
FIGURES = {"confusion_matrix.png", "training_curves.png"}
N = 120
COUNTS = {"train": [30, 70], "val": [3, 7], "test": [48, 72]}  # as scores_with_validation's labels


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    """One SQLite store for the module (making its tables takes seconds); each test logs to its own experiment."""
    return f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlruns.db'}"


@pytest.fixture
def experiment(request) -> str:
    return request.node.name


def runs_of(uri: str, experiment: str) -> dict:
    """The experiment's runs by run key; its leaderboard runs by ``board:<dataset>``."""
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id])
    return {run.data.tags.get(KEY_TAG) or f"board:{run.data.tags[SUMMARY_TAG]}": run for run in runs}


def artifacts(uri: str, run) -> set[str]:
    return {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run.info.run_id)}


def download(uri: str, run, name: str, into: Path) -> bytes:
    into.mkdir(parents=True, exist_ok=True)
    return Path(MlflowClient(tracking_uri=uri).download_artifacts(run.info.run_id, name, str(into))).read_bytes()


def scores_with_validation(seed: int = 0) -> TestScores:
    rng = np.random.default_rng(seed)
    labels = np.array([0] * 48 + [1] * 72)
    logits = (rng.normal(0, 1, size=(N, 2)) + 2.0 * np.eye(2)[labels]).astype(np.float32)
    val_labels = rng.integers(0, 2, size=40)
    val_logits = (rng.normal(0, 1, size=(40, 2)) + 3.0 * np.eye(2)[val_labels]).astype(np.float32)
    val = TestScores.from_logits([f"v{i}" for i in range(40)], val_labels, val_logits)
    return TestScores.from_logits([f"img{i}" for i in range(N)], labels, logits, val)


def eval_sets() -> dict[str, EvalSetResult]:
    """A corrupted set (noise error 0.3, blur 0.2: mean balanced error 0.25) and an external one."""
    parts = {
        "noise@1": {"balanced_accuracy": 0.8}, "noise@3": {"balanced_accuracy": 0.6},
        "blur@1": {"balanced_accuracy": 0.9}, "blur@3": {"balanced_accuracy": 0.7},
    }  # fmt: skip
    corrupted = EvalSetResult("corrupted", "corrupted", ["a", "b"], "b", 100, "x", parts, reference="resnet18")
    external = EvalSetResult(
        "external:e", "external", ["a", "b"], "b", 45, "x", {EXTERNAL_PART: {"balanced_accuracy": 0.7, "auc": 0.8}},
        dataset="e", removed={"checked": 50, "removed": 5},
    )  # fmt: skip
    return {"corrupted": corrupted, "external:e": external}


def test_a_run_carries_its_metrics_steps_figures_and_files(tmp_path, database, experiment):
    folder = tmp_path / "results"
    record = make_record("resnet18", 1, 0.8, ms=3.5, epochs=3, class_counts=COUNTS)
    record.eval_sets = eval_sets()
    record = write_run(record, folder)
    scores_with_validation().save(probs_path(record.path))
    failed = write_run(make_record("vgg16", 0, status="failed"), folder)
    table = export(folder, mlflow=database, experiment=experiment).table
    runs = runs_of(database, experiment)
    assert set(runs) == {record.key, failed.key, "board:d"}
    run, row = runs[record.key], table.set_index("key").loc[record.key]
    assert run.info.status == "FINISHED" and runs[failed.key].info.status == "FAILED"
    beyond_accuracy = (
        "test_ece", "test_ece_equal_mass", "test_brier", "test_nll", "test_ece_scaled", "test_brier_scaled",
        "test_nll_scaled", "temperature", "evalset_corrupted_mean_balanced_error", "evalset_corrupted_be_noise",
        "evalset_external-e_balanced_accuracy", "evalset_external-e_auc",
    )  # fmt: skip
    headline = ("test_accuracy", "test_balanced_accuracy", "test_macro_f1", "test_auc", "latency_b1_ms_p50", "gmacs")
    for name in headline + beyond_accuracy:
        assert run.data.metrics[name] == pytest.approx(row[name]), name
    assert run.data.metrics["evalset_corrupted_mean_balanced_error"] == pytest.approx(0.25)
    assert run.data.metrics["test_ece_scaled"] != pytest.approx(run.data.metrics["test_ece"])  # fitted on val
    assert run.data.params["backbone"] == "resnet18" and run.data.params["seed"] == "1"
    assert run.data.params["epochs"] == "3" and run.data.params["dataset"] == "d"
    assert run.data.tags["bench_experiment"] == record.experiment and run.data.tags["version_torch"] == "2.14.1"
    client = MlflowClient(tracking_uri=database)
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert [(m.step, round(m.value, 6)) for m in history] == [(1, 0.6), (2, 0.5), (3, 0.4)]
    steps = client.get_metric_history(run.info.run_id, "epoch_val_balanced_accuracy")
    assert [m.step for m in steps] == [1, 2, 3]
    files = {"record.json", "confusion_matrix.json", "curves.json", record.path.with_suffix(".probs.npz").name}
    assert artifacts(database, run) == files | FIGURES
    assert artifacts(database, runs[failed.key]) == {"record.json"}  # a failed run has no figures
    counts = json.loads(download(database, run, "confusion_matrix.json", tmp_path / "down"))["counts"]
    assert counts == [list(row) for row in record.test.confusion_matrix]
    # The figures are bench plot's own, byte for byte: drawn by its functions, saved by its writer.
    [record] = [r for r in load_records(folder) if r.key == record.key]
    (tmp_path / "expected").mkdir()
    for name, draw in (("confusion_matrix", confusion_figure), ("training_curves", curves_figure)):
        [expected] = save(draw(record), tmp_path / "expected" / name)
        assert download(database, run, f"{name}.png", tmp_path / "down") == expected.read_bytes(), name
    # The experiment's artifacts lie beside the database, not in ./mlruns under the folder the export ran in.
    beside = artifact_location(database, experiment)
    assert beside.startswith(sqlite_file(database).resolve().parent.as_uri() + "/mlartifacts/")
    assert run.info.artifact_uri.startswith(beside)


def test_each_dataset_gets_bench_plots_trade_off_figure_and_its_leaderboard(tmp_path, database, experiment):
    folder = tmp_path / "results"
    for backbone, acc in (("resnet18", 0.8), ("vgg16", 0.7)):
        for seed in (0, 1):
            write_run(make_record(backbone, seed, acc + seed / 100, dataset="d"), folder)
    write_run(make_record("resnet18", 0, 0.9, dataset="e"), folder)
    done = export(folder, mlflow=database, experiment=experiment).mlflow
    assert (len(done.summaries), len(done.summaries_unchanged)) == (2, 0)
    runs = runs_of(database, experiment)
    board = runs["board:d"]
    boards = {f"d+calibration+subgroups+robustness+external.{ext}" for ext in ("md", "csv", "tex")}
    assert artifacts(database, board) == {"d-tradeoff.png", "d-tradeoff.svg"} | boards
    assert board.data.params == {"dataset": "d", "metric": "balanced_accuracy", "latency": "p50", "runs": "4"}
    assert board.info.run_name == "d leaderboard" and "d-tradeoff.png" in board.data.tags["mlflow.note.content"]
    plotted = plot_all(load_records(folder), "balanced_accuracy", "p50", tmp_path / "plots")
    for ext in ("png", "svg"):  # bench plot's figure, byte for byte
        assert download(database, board, f"d-tradeoff.{ext}", tmp_path / "down") == (
            plotted.tradeoff["d"][0 if ext == "png" else 1].read_bytes()
        )
    csv = download(database, board, sorted(boards)[0], tmp_path / "down").decode()
    assert csv.splitlines()[0].startswith("rank,pareto,") and "ece_mean" in csv.splitlines()[0]
    again = export(folder, mlflow=database, experiment=experiment).mlflow
    assert (len(again.summaries), len(again.summaries_unchanged)) == (0, 2)
    write_run(make_record("vgg16", 2, 0.75, dataset="d"), folder)  # a new run of d: its board is redrawn, e's is not
    third = export(folder, mlflow=database, experiment=experiment).mlflow
    assert (len(third.logged), len(third.summaries), len(third.summaries_unchanged)) == (1, 1, 1)
    runs = runs_of(database, experiment)
    assert len([k for k in runs if k.startswith("board:")]) == 2 and runs["board:d"].data.params["runs"] == "5"


def test_a_re_export_adds_nothing_and_a_changed_record_replaces_its_run(tmp_path, database, experiment):
    folder = tmp_path / "results"
    record = write_run(make_record("resnet18", 0, 0.8), folder)
    write_run(make_record("resnet18", 1, 0.7), folder)
    first = export(folder, mlflow=database, experiment=experiment).mlflow
    again = export(folder, mlflow=database, experiment=experiment).mlflow
    assert (len(first.logged), len(again.logged), len(again.unchanged)) == (2, 0, 2)
    assert len(runs_of(database, experiment)) == 3  # and the leaderboard run
    record.test = dataclasses.replace(record.test, values={**record.test.values, "accuracy": 0.95})  # redone: changed
    save_record(record, folder)
    third = export(folder, mlflow=database, experiment=experiment).mlflow
    assert (len(third.logged), len(third.replaced), len(third.unchanged), len(third.summaries)) == (0, 1, 1, 1)
    runs = runs_of(database, experiment)
    assert len(runs) == 3 and runs[record.key].data.metrics["test_accuracy"] == 0.95
    # A run an older export logged (without figures) is brought up to date by the next export.
    MlflowClient(tracking_uri=database).set_tag(runs[record.key].info.run_id, FORMAT_TAG, "1")
    fourth = export(folder, mlflow=database, experiment=experiment).mlflow
    assert (len(fourth.replaced), len(fourth.unchanged)) == (1, 1)
    assert FIGURES <= artifacts(database, runs_of(database, experiment)[record.key])


@pytest.mark.filterwarnings("ignore:.*its leaderboard row has no 95% CI")  # the leaderboard run's, also naming it
def test_a_damaged_probs_file_is_left_out_with_a_warning_naming_it(tmp_path, database, experiment):
    """Was: left out without a word. The run is still logged, with its record, confusion matrix and figures."""
    record = write_run(make_record("resnet18", 1, 0.8), tmp_path / "results", probs=PROBS, labels=LABELS)
    damaged = record.path.with_suffix(".probs.npz")
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.warns(UserWarning, match=f"{damaged}: unreadable test scores file, damaged .*without it"):
        export(tmp_path / "results", mlflow=database, experiment=experiment)
    run = runs_of(database, experiment)[record.key]
    assert artifacts(database, run) == {"record.json", "confusion_matrix.json"} | FIGURES


def test_a_figure_the_record_cannot_give_is_left_out_with_a_warning(tmp_path, database, experiment):
    record = make_record("resnet18", 1, 0.8)
    record.selection = None  # as no finished record is written: the curves have no selected epoch to mark
    record = write_run(record, tmp_path / "results")
    with pytest.warns(UserWarning, match=f"{record.path}: its training curves figure cannot be drawn .*without it"):
        export(tmp_path / "results", mlflow=database, experiment=experiment)
    run = runs_of(database, experiment)[record.key]
    assert artifacts(database, run) == {"record.json", "confusion_matrix.json", "confusion_matrix.png"}


def test_a_runs_worst_group_and_gap_are_its_one_seed_leaderboard_cells(project, tmp_path, database, experiment):
    add_sex_dataset(project, ["female" if i % 3 else "male" for i in range(N)])
    record = write_run(make_record("resnet18", 0, dataset="meta", class_counts=COUNTS), tmp_path / "r")
    scores_with_validation(3).save(probs_path(record.path))
    export(tmp_path / "r", mlflow=database, experiment=experiment)
    run = runs_of(database, experiment)[record.key]
    cells = leaderboard(load_records(tmp_path / "r"), "meta", columns="subgroups").iloc[0]
    metrics, tags = run.data.metrics, run.data.tags
    assert metrics["test_worst_group_balanced_accuracy"] == pytest.approx(cells["worst_group_balanced_accuracy_mean"])
    assert metrics["test_worst_group_balanced_accuracy_ci95_low"] == cells["worst_group_balanced_accuracy_ci95_low"]
    assert metrics["test_worst_group_n"] == cells["worst_group_n"]
    assert metrics["test_largest_gap_balanced_accuracy"] == pytest.approx(cells["largest_gap_mean"])
    assert tags["bench_worst_group"] == cells["worst_group"] and tags["bench_largest_gap_attribute"] == "sex"
    assert 0.0 < metrics["test_largest_gap_balanced_accuracy"] < 1.0


def test_a_dataset_without_subgroup_metadata_logs_no_subgroup_metric(tmp_path, database, experiment):
    record = write_run(make_record("resnet18", 1, 0.8), tmp_path / "results", probs=PROBS, labels=LABELS)
    export(tmp_path / "results", mlflow=database, experiment=experiment)
    run = runs_of(database, experiment)[record.key]
    assert not [m for m in run.data.metrics if "group" in m or "gap" in m]
    assert "bench_worst_group" not in run.data.tags


def test_curves_are_the_positive_class_for_binary_and_one_vs_rest_otherwise():
    binary = curves(TestScores(np.arange(5).astype(str), LABELS, PROBS), ["a", "b"], "b")
    assert list(binary) == ["b"]
    assert binary["b"]["roc"]["fpr"][0] == 0.0 and binary["b"]["roc"]["tpr"][-1] == 1.0
    labels = np.array([0, 1, 2, 2])
    probs = np.full((4, 3), 1 / 3)
    assert list(curves(TestScores(np.arange(4).astype(str), labels, probs), ["x", "y", "z"], None)) == ["x", "y", "z"]


# ------------------------------------------------------------------------------------ file stores and URIs


def test_a_file_store_is_opened_for_the_export_and_the_hint_says_what_viewing_it_needs(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    record = write_run(make_record("resnet18", 1, 0.8), tmp_path / "results")
    store = f"file:{tmp_path / 'mlruns'}"
    done = export(tmp_path / "results", mlflow=store).mlflow
    assert len(done.logged) == 1 and (tmp_path / "mlruns").is_dir()
    assert set(runs_of(store, "backbone-bench")) == {record.key, "board:d"}
    hint = view_hint(store)
    assert f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {store}" in hint
    assert "sqlite:///mlruns.db" in hint and "pip install" in hint


@pytest.mark.parametrize("store", ["file:./mlruns", "mlruns"])
def test_a_refused_file_store_is_one_line_saying_how_to_allow_it(monkeypatch, store):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
    with pytest.raises(ConfigError) as err:
        log_runs([make_record()], store)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"--mlflow {store}: MLflow 3 refuses a file store unless")
    assert "MLFLOW_ALLOW_FILE_STORE=true" in message and "--mlflow sqlite:///mlruns.db" in message


def test_a_store_that_cannot_be_written_is_one_error_naming_it(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the export sets it: undone after the test
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ResultsError, match=f"--mlflow file:{blocker}/mlruns: "):
        log_runs([make_record()], f"file:{blocker}/mlruns")
    with pytest.raises(ResultsError, match=f"--mlflow sqlite:///{blocker}/mlruns.db: ") as err:
        log_runs([make_record()], f"sqlite:///{blocker}/mlruns.db")
    assert "\n" not in str(err.value)


def test_a_database_without_its_driver_is_one_line_naming_the_module():
    try:
        import MySQLdb  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("MySQLdb is installed here: the store would be tried")
    with pytest.raises(ResultsError, match="^--mlflow mysql://u@127.0.0.1:1/db: the store needs the Python module "):
        log_runs([make_record()], "mysql://u@127.0.0.1:1/db")


def test_a_database_of_a_newer_mlflow_is_named_as_such():
    """MLflow's own message says ``mlflow db upgrade``, which is right for an older database only."""
    from mlflow.exceptions import MlflowException

    versions = Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"
    known = next(versions.glob("*_*.py")).name.split("_")[0]
    said = "Detected out-of-date database schema (found version {}, but expected x). Run 'mlflow db upgrade'"
    older = failure("sqlite:///m.db", MlflowException(said.format(known)))
    assert "mlflow db upgrade" in older and "newer" not in older
    newer = failure("sqlite:///m.db", MlflowException(said.format("0123456789ab")))
    assert newer.startswith("--mlflow sqlite:///m.db: the database was written by a newer MLflow than this one")
    assert "upgrade" not in newer


def test_an_unknown_metric_or_speed_axis_is_refused_before_anything_is_logged(tmp_path):
    with pytest.raises(ConfigError, match="unknown metric 'speed'"):
        log_runs([make_record()], f"sqlite:///{tmp_path / 'm.db'}", metric="speed")
    with pytest.raises(ConfigError, match="unknown latency measure 'p42'"):
        log_runs([make_record()], f"sqlite:///{tmp_path / 'm.db'}", latency="p42")
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sqlite:///mlruns.db", "database"),
        ("postgresql+psycopg://u@h/db", "database"),
        ("file:./mlruns", "file"),
        ("mlruns", "file"),
        ("/abs/mlruns", "file"),
        ("http://127.0.0.1:5000", "server"),
        ("https://mlflow.example.org", "server"),
        ("mlruns-2026", "file"),  # no scheme: MLflow reads a bare word as a folder
        ("databricks", "other"),  # but this one, which it reads as the Databricks workspace
        ("databricks://profile", "other"),
    ],
)
def test_a_uri_is_read_as_mlflow_reads_it(uri, expected):
    assert kind(uri) == expected


def test_a_sqlite_databases_file_and_artifact_folder():
    assert sqlite_file("sqlite:///mlruns.db") == Path("mlruns.db")
    assert sqlite_file("sqlite:////abs/x.db?mode=rw") == Path("/abs/x.db")
    assert sqlite_file("sqlite:///:memory:") is None and sqlite_file("sqlite://") is None
    assert sqlite_file("file:./mlruns") is None
    assert artifact_location("sqlite:////abs/x.db", "my runs/1") == "file:///abs/mlartifacts/my-runs-1"
    assert artifact_location("http://h:5000", "e") is None
    assert "mlflow ui --backend-store-uri sqlite:///mlruns.db" in view_hint("sqlite:///mlruns.db")
    assert view_hint("http://h:5000") == "view: open http://h:5000 in a browser"


def test_runs_table_and_mlflow_agree_on_every_number(tmp_path, database, experiment):
    """Every finite number of the exported table's row is a metric of the run, with the same value."""
    record = write_run(make_record("resnet18", 0, 0.8), tmp_path / "r", probs=PROBS, labels=LABELS)
    export(tmp_path / "r", mlflow=database, experiment=experiment)
    row = runs_table(load_records(tmp_path / "r")).iloc[0]
    run = runs_of(database, experiment)[record.key]
    numbers = {
        c: float(v) for c, v in row.items() if isinstance(v, int | float | np.number) and not isinstance(v, bool)
    }
    numbers = {c: v for c, v in numbers.items() if np.isfinite(v) and c not in run.data.params}
    assert numbers and all(run.data.metrics[c] == pytest.approx(v) for c, v in numbers.items())
