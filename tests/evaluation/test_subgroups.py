"""Scores by subgroup: fairlearn's MetricFrame as the oracle for every group's value, the worst group and the
gap; a plain percentile bootstrap for the CIs; and the groups that cannot be compared, kept and explained."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import MetricFrame
from scipy.special import softmax
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from bench.errors import DataError
from bench.evaluation.subgroups import MIN_GROUP_SIZE, UNKNOWN, subgroup_scores

CLASSES = ("a", "b", "c")


def _case(n: int = 600, seeds: int = 1, k: int = 3, seed: int = 0):
    """Labels, one probs array per training seed, and three attributes: two large sexes and an unknown few,
    four sites of which one is small and one lacks class "c", and age bands as an ordered categorical."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=n)
    labels[:6] = np.arange(6) % k  # every class present overall
    probs = [softmax(rng.normal(0, 1.5, size=(n, k)) + 1.2 * np.eye(k)[labels] * (1 + s), axis=1) for s in range(seeds)]
    sex = rng.choice(["female", "male"], size=n).astype(object)
    sex[-8:] = UNKNOWN
    site = rng.choice(["back", "trunk", "face"], size=n).astype(object)
    site[rng.permutation(n)[:12]] = "ear"  # 12 images: too small for a CI
    site[(site == "face") & (labels == 2)] = "trunk"  # face: no class "c"
    order = ["<30", "30-44", "45-59", "60-74", "75+", UNKNOWN]
    age = pd.Categorical(rng.choice(order[:5], size=n), categories=order)
    groups = pd.DataFrame({"sex": sex, "age": age, "site": site})
    return labels, probs, groups


def _frame(labels, probs, features, k: int = 3) -> MetricFrame:
    """fairlearn's per-group table of balanced accuracy and macro one-vs-rest AUC (y_pred: row indices, so that
    a metric can read the probabilities of the rows a group selects)."""

    def bacc(y, rows):
        return balanced_accuracy_score(y, probs[rows].argmax(axis=1))

    def auc(y, rows):
        if k == 2:
            return roc_auc_score(y == 1, probs[rows][:, 1])
        return roc_auc_score(y, probs[rows], multi_class="ovr", labels=list(range(k)))

    return MetricFrame(
        metrics={"balanced_accuracy": bacc, "auc": auc},
        y_true=labels,
        y_pred=np.arange(labels.size),
        sensitive_features=features,
    )


def test_every_comparable_group_is_fairlearns_by_group():
    labels, (probs,), groups = _case()
    report = subgroup_scores(labels, [probs], groups, CLASSES)
    checked = 0
    for g in report.groups:
        if not g.comparable:
            continue
        members = (groups[g.attribute].astype(str) == g.group).to_numpy()
        frame = _frame(labels[members], probs[members], groups[g.attribute].astype(str)[members])
        for metric in ("balanced_accuracy", "auc"):
            assert g.mean(metric) == pytest.approx(frame.by_group.loc[g.group, metric], abs=1e-9)
        checked += 1
    assert checked >= 6


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true", "ignore:Only one class is present")
@pytest.mark.parametrize("attribute", ["sex", "age", "site"])
def test_worst_group_and_gap_are_fairlearns_group_min_and_difference(attribute):
    labels, (probs,), groups = _case()
    report = subgroup_scores(labels, [probs], groups[[attribute]], CLASSES)
    comparable = [g.group for g in report.groups if g.comparable]
    keep = groups[attribute].astype(str).isin(comparable).to_numpy()
    frame = _frame(labels, probs, groups[attribute].astype(str).to_numpy())
    on_comparable = _frame(labels[keep], probs[keep], groups[attribute].astype(str).to_numpy()[keep])
    assert report.worst().mean("balanced_accuracy") == pytest.approx(
        on_comparable.group_min()["balanced_accuracy"], abs=1e-9
    )
    assert report.worst().group == on_comparable.by_group["balanced_accuracy"].idxmin()
    (gap,) = report.gaps()
    assert gap.mean == pytest.approx(on_comparable.difference()["balanced_accuracy"], abs=1e-9)
    assert set(frame.by_group.index) == {g.group for g in report.groups}  # every group is in the report


def test_seeds_are_averaged_per_group_and_the_gap_per_seed():
    labels, probs, groups = _case(seeds=3)
    report = subgroup_scores(labels, probs, groups[["sex"]], CLASSES)
    per_seed = [_frame(labels, p, groups["sex"].to_numpy()).by_group["balanced_accuracy"] for p in probs]
    male = next(g for g in report.groups if g.group == "male")
    values = [s["male"] for s in per_seed]
    assert male.by_seed["balanced_accuracy"] == pytest.approx(values, abs=1e-9)
    assert (male.mean("balanced_accuracy"), male.std("balanced_accuracy")) == pytest.approx(
        (np.mean(values), np.std(values, ddof=1)), abs=1e-12
    )
    (gap,) = report.gaps()
    gaps = [abs(s["male"] - s["female"]) for s in per_seed]
    assert gap.by_seed == pytest.approx(gaps, abs=1e-9) and gap.mean == pytest.approx(np.mean(gaps), abs=1e-12)


def test_ci_is_a_percentile_bootstrap_over_the_groups_own_images():
    labels, (probs,), groups = _case()
    report = subgroup_scores(labels, [probs], groups[["sex"]], CLASSES)
    female = next(g for g in report.groups if g.group == "female")
    members = groups["sex"].to_numpy() == "female"
    y, p = labels[members], probs[members]
    draws = np.random.default_rng(0).integers(0, y.size, size=(1000, y.size))
    scores = [balanced_accuracy_score(y[d], p[d].argmax(axis=1)) for d in draws]
    low, high = np.quantile(scores, [0.025, 0.975])
    assert female.ci["balanced_accuracy"] == pytest.approx((low, high), abs=1e-9)


def test_groups_that_cannot_be_compared_are_kept_and_say_why():
    labels, (probs,), groups = _case()
    report = subgroup_scores(labels, [probs], groups, CLASSES)
    by = {(g.attribute, g.group): g for g in report.groups}
    ear = by[("site", "ear")]
    assert ear.n == 12 and ear.note == "n=12, too small for a CI" and not ear.comparable
    assert np.isnan(ear.ci["balanced_accuracy"]).all() and not np.isnan(ear.mean("balanced_accuracy"))
    face = by[("site", "face")]
    assert face.absent == ("c",) and "no c: balanced_accuracy and auc undefined" in face.note
    assert np.isnan(face.mean("balanced_accuracy")) and np.isnan(face.mean("auc"))  # never over present classes
    unknown = by[("sex", UNKNOWN)]
    assert "metadata missing" in unknown.note and not unknown.comparable
    assert MIN_GROUP_SIZE == 30
    frame = report.to_frame()
    assert len(frame) == len(report.groups) and (frame["note"] != "").sum() == sum(
        not g.comparable for g in report.groups
    )


def test_groups_are_listed_in_band_order_then_by_size_with_unknown_last():
    labels, (probs,), groups = _case()
    report = subgroup_scores(labels, [probs], groups, CLASSES)
    ages = [g.group for g in report.groups if g.attribute == "age"]
    assert ages == ["<30", "30-44", "45-59", "60-74", "75+"]  # categories order, absent ones left out
    sexes = [g.group for g in report.groups if g.attribute == "sex"]
    assert sexes[-1] == UNKNOWN
    sites = [g for g in report.groups if g.attribute == "site"]
    assert [g.n for g in sites] == sorted((g.n for g in sites), reverse=True)


def test_a_binary_task_scores_its_positive_class():
    labels, (probs,), groups = _case(k=2)
    report = subgroup_scores(labels, [probs], groups[["sex"]], ("neg", "pos"), positive=1)
    frame = _frame(labels, probs, groups["sex"].to_numpy(), k=2)
    male = next(g for g in report.groups if g.group == "male")
    assert male.mean("auc") == pytest.approx(frame.by_group.loc["male", "auc"], abs=1e-9)


def test_no_comparable_group_means_no_worst_group_and_no_gap():
    labels, (probs,), groups = _case()
    report = subgroup_scores(labels, [probs], groups[["sex"]], CLASSES, min_size=10_000)
    assert report.worst() is None and report.gaps() == [] and report.largest_gap() is None


def test_a_group_table_of_other_images_is_refused():
    labels, probs, groups = _case()
    with pytest.raises(DataError, match="subgroup table has 599 rows for 600 test images"):
        subgroup_scores(labels, probs, groups.iloc[1:], CLASSES)
