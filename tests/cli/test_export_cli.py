"""``bench export`` as a user runs it: CSV on stdout for a pipe, a file by its suffix, MLflow once per run."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pandas as pd
import pytest
from factories import make_record, write_run


def bench(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from bench.cli import main; main()", "export", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "80", **env},
    )


def test_stdout_is_the_csv_and_a_file_is_written_by_its_suffix(tmp_path):
    write_run(make_record("tf_efficientnet_lite0", 0, 0.8, ms=3.25), tmp_path / "results")
    piped = bench("--results-dir", str(tmp_path / "results"))
    assert piped.returncode == 0, piped.stderr
    table = pd.read_csv(io.StringIO(piped.stdout))
    assert table["backbone"].tolist() == ["tf_efficientnet_lite0"] and table["latency_b1_ms_p50"].tolist() == [3.25]
    written = bench("--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "runs.parquet"))
    assert written.returncode == 0 and f"written: {tmp_path / 'runs.parquet'} (1 runs" in written.stderr
    assert written.stdout == ""  # stdout holds data alone: here, none
    assert pd.read_parquet(tmp_path / "runs.parquet")["key"].tolist() == table["key"].tolist()
    wrong = bench("--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "runs.txt"))
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1
    assert "runs.txt: the table is written as .csv or .parquet" in wrong.stderr
    assert not (tmp_path / "runs.txt").exists()


def test_mlflow_logs_each_run_once_and_says_how_to_view_them(tmp_path):
    pytest.importorskip("mlflow", reason='MLflow is an optional extra: pip install -e ".[mlflow]"')
    write_run(make_record("resnet18", 0, 0.8), tmp_path / "results")
    store = f"sqlite:///{tmp_path / 'mlruns.db'}"
    first = bench("--results-dir", str(tmp_path / "results"), "--mlflow", store)
    assert first.returncode == 0, first.stderr
    assert "1 runs logged, 0 replaced (their record changed), 0 already there" in first.stdout
    assert "trade-off plot and leaderboard of 1 dataset: 1 logged, 0 already there" in first.stdout
    assert f"view: mlflow ui --backend-store-uri {store} (the full package at this version" in first.stdout
    again = bench("--results-dir", str(tmp_path / "results"), "--mlflow", store)
    assert "0 runs logged, 0 replaced (their record changed), 1 already there" in again.stdout
    assert "1 dataset: 0 logged, 1 already there" in again.stdout


def test_a_refused_file_store_is_one_line(tmp_path):
    pytest.importorskip("mlflow", reason='MLflow is an optional extra: pip install -e ".[mlflow]"')
    write_run(make_record("resnet18", 0, 0.8), tmp_path / "results")
    store = str(tmp_path / "mlruns")  # a bare folder: a file store, as MLflow reads it
    refused = bench("--results-dir", str(tmp_path / "results"), "--mlflow", store, MLFLOW_ALLOW_FILE_STORE="0")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    said = " ".join(refused.stderr.split())
    assert f"{store}: MLflow 3 refuses a file store unless MLFLOW_ALLOW_FILE_STORE=true" in said
    assert not (tmp_path / "mlruns").exists()
