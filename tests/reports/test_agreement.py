"""Two results folders of the same experiments: rows paired by identity less precision, seed by seed."""

from __future__ import annotations

import numpy as np
import pytest
from factories import make_record, write_run

from bench.errors import ConfigError, DataError
from bench.evaluation.values import compute_metrics
from bench.reports.agreement import agreement, engine_name
from bench.runs.record import load_records
from bench.train.engine import EngineConfig

N = 300
LABELS = np.random.default_rng(3).integers(0, 2, N)


def _probs(accuracy: float, stream: int) -> np.ndarray:
    right = np.random.default_rng(stream).random(N) < accuracy
    probs = np.full((N, 2), 0.2)
    probs[np.arange(N), np.where(right, LABELS, 1 - LABELS)] = 0.8
    return probs


def _write(root, seed, probs, *, precision="auto", epochs=2, train_s=10.0, ids=None, engine=None):
    """A run whose stored test scores are those of ``probs`` (as a real run's are), with its training time."""
    record = make_record("resnet18", seed, precision=precision, epochs=epochs)
    record.test = compute_metrics(LABELS, probs, ("a", "b"))
    record.timings_s = {"train": train_s}
    record.engine = engine
    write_run(record, root, probs, LABELS, ids)


@pytest.fixture
def baseline(tmp_path):
    root = tmp_path / "baseline"
    for seed, acc in enumerate((0.70, 0.80, 0.90)):
        _write(root, seed, _probs(acc, seed))
    return root


def _rows(baseline, candidate, **kw):
    return agreement(load_records(baseline), load_records(candidate), "accuracy", **kw)


def test_the_same_probabilities_are_identical(tmp_path, baseline):
    for seed, acc in enumerate((0.70, 0.80, 0.90)):
        _write(tmp_path / "same", seed, _probs(acc, seed), precision="fp32", engine=EngineConfig(channels_last=True))
    (row,) = _rows(baseline, tmp_path / "same").rows
    assert row.verdict == "identical" and row.identical_seeds == 3 and row.difference == 0 and row.largest_change == 0
    assert row.seeds == [0, 1, 2] and engine_name(row.candidate[0]) == "fp32-nhwc"


@pytest.mark.parametrize(
    ("accuracies", "verdict"),
    [
        ((0.72, 0.79, 0.91), "within spread"),  # a new draw of each seed: well inside the baseline's 0.1 spread
        ((0.95, 0.95, 0.97), "outside spread"),  # every seed far better: a finding
    ],
)
def test_verdict_reads_the_baseline_seed_spread(tmp_path, baseline, accuracies, verdict):
    for seed, acc in enumerate(accuracies):
        _write(tmp_path / "new", seed, _probs(acc, 100 + seed), precision="bf16", engine=EngineConfig(amp="bf16"))
    (row,) = _rows(baseline, tmp_path / "new").rows
    scores = [r.score("accuracy") for r in row.baseline]
    assert row.spread == pytest.approx(np.std(scores, ddof=1))
    want = np.mean([r.score("accuracy") for r in row.candidate]) - np.mean(scores)
    assert row.difference == pytest.approx(want, abs=1e-12)  # the bootstrap's point estimate: the seed means
    assert row.verdict == verdict and engine_name(row.candidate[0]) == "bf16-nchw"
    assert row.largest_change == pytest.approx(0.6)  # one prediction flipped: 0.8 -> 0.2
    assert row.paired.low <= row.difference <= row.paired.high


def test_seeds_pair_and_one_seed_has_no_spread(tmp_path, baseline):
    _write(tmp_path / "new", 1, _probs(0.8, 7), precision="bf16")
    _write(tmp_path / "new", 5, _probs(0.8, 8), precision="bf16")  # no seed 5 in the baseline: not paired
    (row,) = _rows(baseline, tmp_path / "new").rows
    assert row.seeds == [1] and [r.spec.seed for r in row.candidate] == [1]
    assert row.verdict == "one seed" and np.isnan(row.spread)


def test_other_experiments_are_listed_unmatched_and_none_is_an_error(tmp_path, baseline):
    _write(tmp_path / "new", 0, _probs(0.8, 0), epochs=3)  # another protocol: not the same question
    with pytest.raises(ConfigError, match="only the precision may differ"):
        _rows(baseline, tmp_path / "new")
    _write(tmp_path / "new", 0, _probs(0.8, 0), precision="bf16")
    result = _rows(baseline, tmp_path / "new")
    assert len(result.rows) == 1 and result.unmatched == ("d/resnet18/scratch",)
    with pytest.raises(ConfigError, match="on 'other'"):
        _rows(baseline, tmp_path / "new", dataset="other")


def test_other_test_images_are_refused(tmp_path, baseline):
    _write(tmp_path / "new", 0, _probs(0.8, 0), precision="bf16", ids=[f"x{i}" for i in range(N)])
    with pytest.raises(DataError, match="must share their test split"):
        _rows(baseline, tmp_path / "new")


def test_epoch_time_ratio_weighs_rows_by_cost(tmp_path, baseline):
    """Training seconds over epochs run, seed medians, candidate over baseline (the baseline: 10 s / 2 epochs)."""
    for seed, train_s in ((0, 4.0), (1, 4.0), (2, 40.0)):  # seed 2 beside a busy job: the median ignores it
        _write(tmp_path / "new", seed, _probs(0.8, seed), precision="bf16", train_s=train_s)
    result = _rows(baseline, tmp_path / "new")
    assert result.rows[0].epoch_ratio == pytest.approx(0.4) and result.epoch_ratio == pytest.approx(0.4)
    frame = result.frame()
    assert frame.loc[0, "epoch_s_baseline"] == pytest.approx(5.0) and frame.loc[0, "epoch_s_candidate"] == 2.0
    assert sum(result.counts().values()) == 1


@pytest.mark.parametrize(
    ("engine", "name"),
    [
        (None, "fp32-nchw"),  # a record from before the engine was stored
        (EngineConfig(), "fp32-nchw"),
        (EngineConfig(amp="bf16", channels_last=True), "bf16-nhwc"),
        (EngineConfig(channels_last=True, fused_optimizer=True), "fp32-nhwc+fused"),
    ],
)
def test_engine_names_spell_the_plans_settings(engine, name):
    record = make_record()
    record.engine = engine
    assert engine_name(record) == name
