"""Evaluation sets' saved scores and typed results: the file round-trips, a result's numbers are the metric table's
on the saved probabilities, and a rescore brings a record's block back in line with its file."""

from __future__ import annotations

import numpy as np
import pytest

from bench.errors import ResultsError
from bench.evaluation.eval_results import (
    EXTERNAL_PART,
    EvalScores,
    EvalSetResult,
    eval_results,
    eval_scores_path,
    load_eval_scores,
    part_name,
    rescored_eval_sets,
    save_eval_scores,
    score_parts,
    split_part,
)
from bench.evaluation.scores import softmax64
from bench.evaluation.values import compute_metrics


def scores(n: int = 40, k: int = 2, parts=("noise@1", "noise@2"), seed: int = 0) -> EvalScores:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    logits = {p: rng.normal(size=(n, k)).astype(np.float32) + 2 * np.eye(k)[labels] for p in parts}
    ids = np.array([f"test/{i}" for i in range(n)])
    return EvalScores(ids, labels, {p: softmax64(v) for p, v in logits.items()}, logits)


def test_the_file_round_trips_every_set_and_part(tmp_path):
    sets = {"corrupted": scores(), "external:isic": scores(k=2, parts=(EXTERNAL_PART,), seed=1)}
    path = eval_scores_path(tmp_path / "run.json")
    assert path.name == "run.evalsets.npz"
    save_eval_scores(path, sets)
    back = load_eval_scores(path)
    assert set(back) == set(sets)
    for name, saved in sets.items():
        assert np.array_equal(back[name].ids, saved.ids) and np.array_equal(back[name].labels, saved.labels)
        for part in saved.probs:
            assert np.array_equal(back[name].probs[part], saved.probs[part])
            assert back[name].logits[part].dtype == np.float32


def test_a_damaged_file_is_one_line(tmp_path):
    path = tmp_path / "run.evalsets.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(ResultsError, match="unreadable eval set scores file"):
        load_eval_scores(path)


def test_parts_are_scored_with_the_metric_table_and_named_by_corruption_and_severity():
    saved = scores()
    parts, block = score_parts(saved, ["a", "b"], "b", full=True)
    expected = compute_metrics(saved.labels, saved.probs["noise@1"], ["a", "b"], "b")
    assert parts["noise@1"] == expected.values and block == expected.to_dict()
    assert part_name("pixelate", 3) == "pixelate@3" and split_part("pixelate@3") == ("pixelate", 3)


def test_a_rescore_recomputes_the_block_from_the_file(tmp_path):
    record_file = tmp_path / "run.json"
    saved = scores()
    save_eval_scores(eval_scores_path(record_file), {"corrupted": saved})
    parts, _ = score_parts(saved, ["a", "b"], "b")
    stored = EvalSetResult("corrupted", "corrupted", ["a", "b"], "b", 40, "run.evalsets.npz", parts).to_dict()
    assert rescored_eval_sets(record_file, {"corrupted": stored}) == {"corrupted": stored}
    drifted = stored | {"parts": {p: v | {"auc": 0.0} for p, v in parts.items()}}
    assert rescored_eval_sets(record_file, {"corrupted": drifted}) == {"corrupted": stored}
    assert eval_results({"corrupted": stored})["corrupted"].value("noise@2", "auc") == parts["noise@2"]["auc"]
    with pytest.raises(ResultsError, match="no scores for the eval set 'other'"):
        rescored_eval_sets(record_file, {"other": stored | {"name": "other"}})
    eval_scores_path(record_file).unlink()
    with pytest.raises(ResultsError, match="run.evalsets.npz is missing"):
        rescored_eval_sets(record_file, {"corrupted": stored})
