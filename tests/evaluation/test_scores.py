"""The saved test-scores file: float32 logits and their float64 softmax, read back as saved, old files too."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench.errors import ResultsError
from bench.evaluation.metrics import compute_metrics
from bench.evaluation.scores import TestScores, softmax64


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
    """The promise of the README's one-liner: no transformation between the file and the stored number."""
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


def test_unreadable_file_names_itself(tmp_path) -> None:
    (tmp_path / "x.probs.npz").write_text("not an npz")
    with pytest.raises(ResultsError, match="x.probs.npz: unreadable test scores file"):
        TestScores.load(tmp_path / "x.probs.npz")
