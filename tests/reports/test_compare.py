"""Paired comparisons from stored records: selection, pairing checks, and the verdict."""

from __future__ import annotations

import numpy as np
import pytest
from factories import make_record, write_run

from bench.errors import ConfigError, DataError
from bench.reports.compare import compare_backbones
from bench.runs.record import load_records

N = 400


def _probs(accuracy: float, labels: np.ndarray, seed: int) -> np.ndarray:
    """Confident predictions, right on a ``accuracy`` fraction of images."""
    rng = np.random.default_rng(seed)
    right = rng.random(len(labels)) < accuracy
    pred = np.where(right, labels, 1 - labels)
    probs = np.full((len(labels), 2), 0.1)
    probs[np.arange(len(labels)), pred] = 0.9
    return probs


def _stream(backbone: str, seed: int) -> int:
    return seed * 1000 + sum(map(ord, backbone))


LABELS = np.random.default_rng(99).integers(0, 2, N)


def _write_run(root, backbone, seed, accuracy, protocol="scratch", ids=None, labels=None, epochs=2):
    labels = LABELS if labels is None else labels
    record = make_record(backbone, seed, accuracy, protocol=protocol, epochs=epochs)
    write_run(record, root, _probs(accuracy, labels, _stream(backbone, seed)), labels, ids)


@pytest.fixture
def results(tmp_path):
    for seed in (0, 1, 2):
        _write_run(tmp_path, "good", seed, 0.90)
        _write_run(tmp_path, "twin", seed, 0.90)
        _write_run(tmp_path, "poor", seed, 0.75)
    return tmp_path


def test_clearly_better_is_significant(results):
    result = compare_backbones(load_records(results), "d", "good", "poor", "accuracy")
    assert result.significant and result.paired.difference > 0.1 and result.paired.low > 0
    assert result.a.seeds == [0, 1, 2] and set(result.mcnemar_by_seed) == {0, 1, 2}
    assert all(t.p_value < 0.01 for t in result.mcnemar_by_seed.values())


def test_equally_good_is_not_significant(results):
    result = compare_backbones(load_records(results), "d", "good", "twin", "accuracy")
    assert not result.significant and result.paired.low < 0 < result.paired.high


def test_seed_averaged_score(results):
    records = load_records(results)
    result = compare_backbones(records, "d", "good", "poor", "accuracy")
    per_seed = [np.mean(_probs(0.90, LABELS, _stream("good", s)).argmax(1) == LABELS) for s in (0, 1, 2)]
    assert result.paired.score_a == pytest.approx(np.mean(per_seed))


def test_different_test_images_are_refused(results):
    _write_run(results, "other", 0, 0.9, ids=[f"x{i}" for i in range(N)])
    with pytest.raises(DataError, match="tested on other images"):
        compare_backbones(load_records(results), "d", "good", "other")


@pytest.mark.parametrize(
    "a, protocol, match",
    [
        ("nope", None, r"no finished runs of 'nope' on 'd' \(backbones with runs: good, poor, twin"),
        ("good", "linear", "no finished runs of 'good' with protocol 'linear'"),
    ],
)
def test_unknown_sides(results, a, protocol, match):
    with pytest.raises(ConfigError, match=match):
        compare_backbones(load_records(results), "d", a, "poor", protocol_a=protocol)


def test_several_protocols_need_a_choice(results):
    _write_run(results, "good", 0, 0.9, protocol="staged")
    several = r"several settings \(scratch at 28 px, staged at 28 px\): pass one of those labels as --protocol"
    with pytest.raises(ConfigError, match=several):
        compare_backbones(load_records(results), "d", "good", "poor")
    assert compare_backbones(load_records(results), "d", "good", "poor", protocol_a="staged").a.seeds == [0]


def test_a_side_is_one_experiment_chosen_by_its_row_label(results):
    """Runs of other epochs are another experiment: never pooled into one side."""
    _write_run(results, "good", 0, 0.6, epochs=1)
    with pytest.raises(ConfigError, match=r"several settings \(scratch e1 at 28 px, scratch e2 at 28 px\)"):
        compare_backbones(load_records(results), "d", "good", "poor")
    result = compare_backbones(load_records(results), "d", "good", "poor", protocol_a="scratch e2")
    assert result.a.seeds == [0, 1, 2] and result.a.protocol == "scratch e2"
