"""The library API (``import bench``): cheap to import, the harness's own numbers, and the README example runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bench
from bench.errors import DataError
from bench.evaluation.bootstrap import bootstrap_ci
from bench.evaluation.values import compute_metrics

REPO = Path(__file__).resolve().parents[1]
MISSION = REPO / "results" / "mission"  # published records with `bench latency` passes beside them


def test_import_bench_loads_no_heavy_library():
    heavy = "{'torch', 'timm', 'pandas', 'numpy'}"
    code = f"import sys, bench; bench.__version__; print(sorted({heavy} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_public_names_resolve():
    for name in bench.__all__:
        assert getattr(bench, name) is not None, name
    assert isinstance(bench.__version__, str) and bench.__version__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bench.nope  # noqa: B018


def _predictions(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs


def test_evaluate_scores_as_a_run_does():
    y, probs = _predictions(200, 3)
    classes = ["a", "b", "c"]
    result = bench.evaluate(y, probs, task="multiclass", classes=classes)
    assert result.metrics == compute_metrics(y, probs, classes) and result.n_images == 200
    assert set(result.ci) == set(result.values)
    for metric in ("balanced_accuracy", "auc", "macro_f1"):
        assert result.ci[metric] == bootstrap_ci(y, probs, metric)  # same resamples, same seed, same CI
        low, high = result.ci[metric].low, result.ci[metric].high
        assert low <= result.values[metric] <= high


def test_evaluate_takes_a_binary_positive_score_column():
    y, probs = _predictions(150, 2, seed=1)
    both = bench.evaluate(y, probs, classes=["benign", "malignant"], positive="malignant")
    column = bench.evaluate(y, probs[:, 1], classes=["benign", "malignant"], positive="malignant")
    assert column.values == pytest.approx(both.values, abs=1e-12)
    flipped = bench.evaluate(1 - y, probs[:, 1], classes=["malignant", "benign"], positive="malignant")
    assert flipped.values["auc"] == pytest.approx(both.values["auc"], abs=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task": "binary"}, "task 'binary' does not fit 3 classes"),
        ({"classes": ["x", "y"]}, "probs has 3 columns but the task has 2 classes"),
        ({"positive": "b"}, "only binary tasks have one"),
    ],
)
def test_evaluate_refuses_what_does_not_fit(kwargs, message):
    y, probs = _predictions(30, 3)
    with pytest.raises(DataError, match=re.escape(message)):
        bench.evaluate(y, probs, **kwargs)


def python_example(page: str = "README.md", heading: str = "## Use it from Python") -> str:
    """The first python block after ``heading`` in ``page`` (the README's "Use it from Python" section)."""
    section = (REPO / page).read_text().split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def readme_example() -> str:
    return python_example()


def test_the_docs_page_shows_the_readme_example():
    """docs/python.md repeats the README's example; the one that runs below is the one both show."""
    assert python_example("docs/python.md", "# Use it from Python") == readme_example()


def test_the_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))
    namespace: dict = {}
    exec(compile(readme_example(), "README.md: Use it from Python", "exec"), namespace)
    record, result = namespace["record"], namespace["result"]
    assert record.ok and (tmp_path / "results" / "example" / "runs").is_dir()
    assert result.values == pytest.approx({k: record.score(k) for k in result.values}, abs=1e-12)


@pytest.fixture(scope="module")
def mission_command(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """`bench leaderboard --format json` on a copy of results/mission (the command writes its tables beside it)."""
    folder = tmp_path_factory.mktemp("mission")
    for part in ("runs", "latency"):
        shutil.copytree(MISSION / part, folder / part)
    args = ["leaderboard", "--results-dir", str(folder), "--format", "json"]
    code = "from bench.cli.commands import main; main()"
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, timeout=600)
    return folder, pd.DataFrame(json.loads(out.stdout))


@pytest.mark.parametrize("dataset", ["isic", "chest_xray", "ham10000"])
def test_the_api_leaderboard_is_the_commands(mission_command, dataset):
    """`bench.leaderboard(bench.load_records(folder), d)` is the table `bench leaderboard --results-dir folder`
    prints: same rows in the same order, the same `bench latency` passes behind the latency, the same front."""
    folder, printed = mission_command
    table = bench.leaderboard(bench.load_records(folder), dataset)
    command = printed[printed["dataset"] == dataset].reset_index(drop=True)
    assert list(table.columns) == list(command.columns) and len(table) == len(command) > 2
    for column in ("backbone", "protocol", "experiment", "pareto", "latency_from"):
        assert table[column].fillna("").tolist() == command[column].fillna("").tolist(), column
    assert table["latency_from"].str.startswith("latency/").any()  # the passes were read, not skipped on both sides
    for column in ("rank", "latency_ms", "latency_ms_min", "latency_ms_max", "throughput", "balanced_accuracy_mean"):
        np.testing.assert_allclose(table[column], command[column].astype(float), rtol=1e-12, err_msg=column)


# a bare value where run_sweep takes a list -> the one line it gets (was: "unknown backbone 'r'", letter by letter)
NOT_LISTS = {
    "backbone-string": ({"backbones": "vgg16"}, "backbones takes a list, got str 'vgg16': write backbones=['vgg16']"),
    "dataset-string": ({"datasets": "isic"}, "datasets takes a list, got str 'isic': write datasets=['isic']"),
    "seed-number": ({"seeds": 0}, "seeds takes a list, got int 0: write seeds=[0]"),
    "seeds-string": ({"seeds": "0,1"}, "seeds takes a list, got str '0,1': write seeds=[...]"),
}


@pytest.mark.parametrize(("given", "problem"), NOT_LISTS.values(), ids=NOT_LISTS.keys())
def test_run_sweep_refuses_a_bare_value_where_it_takes_a_list(tmp_path, given, problem):
    from bench.errors import ConfigError

    arguments = {"backbones": ["resnet18"], "datasets": ["isic"], "results_dir": tmp_path / "r"} | given
    with pytest.raises(ConfigError, match=f"^{re.escape(problem)}$"):
        bench.run_sweep(**arguments)
    assert not (tmp_path / "r").exists()
