"""``bench export --mlflow http://...`` against a real tracking server (``mlflow server``, SQLite behind it, artifacts
proxied through it), read back with ``MlflowClient`` over HTTP: params, metrics, steps, figures and files.

The server is the full ``mlflow`` package's (``mlflow-skinny``, the extra, has no server). It runs from this
environment where the full package is installed, else from the ``mlflow`` executable ``BENCH_MLFLOW_SERVER`` names
(a server in an environment of its own, as a tracking server usually is: the full package pins its
``mlflow-skinny`` exactly, so it cannot always sit beside the lock's). Absent both, the test is skipped here and
fails under CI, which installs one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from factories import make_record, write_run

from bench.reports.export import export
from bench.reports.mlflow_export import KEY_TAG, SUMMARY_TAG
from bench.reports.mlflow_store import view_hint
from bench.runs.record import load_records

pytest.importorskip("mlflow", reason='MLflow is an optional extra: pip install -e ".[mlflow]"')
from mlflow.tracking import MlflowClient  # noqa: E402

LABELS = [0, 1, 1, 0, 1]
PROBS = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]]
SERVER_ENV = "BENCH_MLFLOW_SERVER"
STARTUP_S = 300  # a loaded 2-core machine takes a minute to make the server's tables and start it
NO_SERVER = (
    "no MLflow tracking server here: the full mlflow package is not installed (mlflow-skinny has no server); "
    f"pip install mlflow, or name an mlflow executable from another environment in {SERVER_ENV}"
)


def server_command() -> list[str] | None:
    """How to run ``mlflow``'s CLI with its ``server`` command, or None."""
    named = os.environ.get(SERVER_ENV)
    if named:
        return [named]
    try:
        version("mlflow")  # the full package (mlflow-skinny is another distribution)
    except PackageNotFoundError:
        return None
    return [sys.executable, "-m", "mlflow"]


@pytest.fixture(scope="module")
def server():
    """A tracking server on a free local port for this module; its SQLite database and artifacts in a temp folder."""
    command = server_command()
    if command is None:
        if os.environ.get("CI"):
            pytest.fail(f"{NO_SERVER} (CI installs one: see docs/records.md, Exports)")
        pytest.skip(NO_SERVER)
    folder = Path(tempfile.mkdtemp(prefix="bench-mlflow-server-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (folder / "server.log").open("wb")
    process = subprocess.Popen(
        [
            *command, "server", "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
            "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1",
        ],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its workers: one process group, ours
        env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, folder / "server.log")
        yield url
    finally:
        _stop(process)
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"mlflow server not up at {url} after {STARTUP_S} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    """The server's process group (it starts its own workers), which this fixture started."""
    if process.poll() is None:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def test_runs_exported_to_a_tracking_server_are_read_back_with_their_figures(server, tmp_path):
    folder = tmp_path / "results"
    ok = write_run(make_record("resnet18", 0, 0.8, epochs=3), folder, probs=PROBS, labels=LABELS)
    other = write_run(make_record("vgg16", 1, 0.7), folder)
    done = export(folder, mlflow=server, experiment="served").mlflow
    assert (len(done.logged), len(done.summaries)) == (2, 1)
    client = MlflowClient(tracking_uri=server)
    experiment = client.get_experiment_by_name("served")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # proxied by the server, not a local path
    runs = {
        r.data.tags.get(KEY_TAG) or r.data.tags[SUMMARY_TAG]: r for r in client.search_runs([experiment.experiment_id])
    }
    assert set(runs) == {ok.key, other.key, "d"}
    [record] = [r for r in load_records(folder) if r.key == ok.key]
    run = runs[ok.key]
    assert run.data.metrics["test_balanced_accuracy"] == pytest.approx(record.score("balanced_accuracy"))
    assert run.data.metrics["test_brier"] > 0 and "test_nll" in run.data.metrics  # from the saved probabilities
    assert run.data.params["backbone"] == "resnet18" and run.data.params["epochs"] == "3"
    history = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in history] == [1, 2, 3]
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"confusion_matrix.png", "training_curves.png", "record.json", "curves.json"} <= files
    png = Path(client.download_artifacts(run.info.run_id, "confusion_matrix.png", str(tmp_path))).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 1000
    board = {a.path for a in client.list_artifacts(runs["d"].info.run_id)}
    assert {"d-tradeoff.png", "d-tradeoff.svg"} <= board
    again = export(folder, mlflow=server, experiment="served").mlflow  # found again over HTTP by its tags
    assert (len(again.logged), len(again.unchanged), len(again.summaries_unchanged)) == (0, 2, 1)
    assert view_hint(server) == f"view: open {server} in a browser"
