"""The saved test-scores file: float32 logits and their float64 softmax, read back as saved, old files too."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.errors import ResultsError
from bench.evaluation.scores import TestScores, softmax64
from bench.evaluation.values import compute_metrics


def test_round_trip_keeps_every_array_and_dtype(tmp_path) -> None:
    logits = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    saved = TestScores.from_logits([f"img{i}" for i in range(30)], np.arange(30) % 3, logits)
    saved.save(tmp_path / "r.probs.npz")
    back = TestScores.load(tmp_path / "r.probs.npz")
    assert back.logits.dtype == np.float32 and back.probs.dtype == np.float64 and back.labels.dtype == np.int64
    assert np.array_equal(back.logits, logits) and np.array_equal(back.probs, saved.probs)
    assert back.ids.tolist() == [f"img{i}" for i in range(30)]
    assert np.array_equal(back.probs, softmax64(logits))


def test_float64_softmax_keeps_confident_images_apart() -> None:
    """A float32 softmax saturates to exactly 1.0 and ties confident images; float64 keeps their order."""
    logits = np.array([[0.0, 18.0], [0.0, 20.0], [0.0, 1.0], [0.0, 19.0]], dtype=np.float32)
    float32 = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    assert (float32[:, 1] == 1.0).sum() == 3  # three images tied at 1.0
    scores = TestScores.from_logits(["a", "b", "c", "d"], np.array([0, 1, 0, 1]), logits)
    assert len(set(scores.probs[:, 1])) == 4
    # Negative a (logit gap 18) is below both positives: float64 ranks all 4 pairs right; float32 ties 2 of them.
    assert roc_auc_score(scores.labels, scores.probs[:, 1]) == 1.0
    assert roc_auc_score(scores.labels, float32[:, 1]) == 0.75


def test_stored_auc_is_scikit_learn_on_the_saved_column(tmp_path) -> None:
    """The promise of the one-liner in docs/records.md: no transformation between the file and the stored number."""
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    logits = (rng.normal(size=(200, 2)) * 30 + 40 * np.eye(2)[labels]).astype(np.float32)  # many saturated
    TestScores.from_logits([str(i) for i in range(200)], labels, logits).save(tmp_path / "r.probs.npz")
    saved = TestScores.load(tmp_path / "r.probs.npz")
    stored = compute_metrics(saved.labels, saved.probs, ["neg", "pos"]).values["auc"]
    assert stored == pytest.approx(roc_auc_score(saved.labels, saved.probs[:, 1]), abs=1e-12)


def test_files_without_logits_load_as_saved(tmp_path) -> None:
    """Files written before logits were saved hold float32 softmax values: read as they are, logits None."""
    probs = np.array([[0.25, 0.75], [0.6, 0.4]], dtype=np.float32).astype(np.float64)
    np.savez_compressed(tmp_path / "old.probs.npz", ids=np.array(["a", "b"]), labels=np.array([1, 0]), probs=probs)
    old = TestScores.load(tmp_path / "old.probs.npz")
    assert old.logits is None and np.array_equal(old.probs, probs) and old.labels.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("arrays", "problem"),
    [
        ({"ids": np.array(["a"]), "labels": np.array([0])}, "test scores file has no probs"),
        ({"ids": np.array(["a", "b"]), "labels": np.array([0]), "probs": np.ones((1, 2)) / 2}, "disagree"),
        (
            {"ids": np.array(["a"]), "labels": np.array([0]), "probs": np.ones((1, 2)) / 2, "logits": np.ones((1, 3))},
            r"logits \(1, 3\) and probs \(1, 2\) differ in shape",
        ),
    ],
)
def test_malformed_files_are_one_line_results_errors(tmp_path, arrays, problem) -> None:
    path = tmp_path / "bad.probs.npz"
    np.savez(path, **arrays)
    with pytest.raises(ResultsError, match=problem) as err:
        TestScores.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


# what is left of a saved file -> why it cannot be read: OSError/ValueError were caught, EOFError (0 bytes; on
# the CLI, click's end of input), BadZipFile (truncated) and zlib.error (a corrupt member) were not (issue 28)
DAMAGED = {
    "not-an-npz": (lambda data: b"not an npz", "This file contains pickled"),  # numpy reads it as a pickle
    "empty": (lambda data: b"", "No data left in file"),
    "truncated": (lambda data: data[: len(data) // 2], "File is not a zip file"),
    "member-corrupt": (lambda data: data[:100] + bytes(40) + data[140:], "Error -3 while decompressing data"),
}


@pytest.mark.parametrize(("damage", "reason"), DAMAGED.values(), ids=DAMAGED.keys())
def test_a_damaged_file_is_one_line_naming_itself(tmp_path, damage, reason) -> None:
    path = tmp_path / "x.probs.npz"
    TestScores.from_logits([f"i{i}" for i in range(50)], np.arange(50) % 2, np.ones((50, 2))).save(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ResultsError, match=f"x.probs.npz: unreadable test scores file, damaged \\(.*{reason}") as err:
        TestScores.load(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_validation_scores_travel_beside_the_test_ones(tmp_path) -> None:
    """New files hold the selected model's validation scores under ``val_*`` keys (for calibration fitted on
    validation); the test keys are unchanged, so every reader of old files reads new ones alike."""
    rng = np.random.default_rng(0)
    val = TestScores.from_logits(["v0", "v1", "v2"], np.array([0, 1, 1]), rng.normal(size=(3, 2)))
    saved = TestScores.from_logits(["t0", "t1"], np.array([1, 0]), rng.normal(size=(2, 2)), val)
    saved.save(tmp_path / "r.probs.npz")
    with np.load(tmp_path / "r.probs.npz") as npz:
        val_keys = {"val_ids", "val_labels", "val_probs", "val_logits"}
        assert set(npz.files) == {"ids", "labels", "probs", "logits"} | val_keys
    back = TestScores.load(tmp_path / "r.probs.npz")
    assert back.ids.tolist() == ["t0", "t1"] and back.val is not None and back.val.val is None
    assert np.array_equal(back.val.logits, val.logits) and np.array_equal(back.val.probs, val.probs)
    assert back.val.ids.tolist() == ["v0", "v1", "v2"] and back.val.labels.dtype == np.int64


def test_files_without_validation_scores_load_with_none(tmp_path) -> None:
    TestScores.from_logits(["t0"], np.array([1]), np.zeros((1, 2))).save(tmp_path / "old.probs.npz")
    assert TestScores.load(tmp_path / "old.probs.npz").val is None


def test_malformed_validation_scores_are_named(tmp_path) -> None:
    path = tmp_path / "bad.probs.npz"
    test = {"ids": np.array(["a"]), "labels": np.array([0]), "probs": np.ones((1, 2)) / 2}
    np.savez(path, **test, val_ids=np.array(["v"]), val_labels=np.array([0, 1]), val_probs=np.ones((1, 2)) / 2)
    with pytest.raises(ResultsError, match=r"val_probs \(1, 2\), val_labels \(2,\) and val_ids disagree"):
        TestScores.load(path)
    np.savez(path, **test, val_ids=np.array(["v"]), val_labels=np.array([0]))
    with pytest.raises(ResultsError, match="test scores file has no val_probs"):
        TestScores.load(path)
