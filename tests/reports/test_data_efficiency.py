"""The data-efficiency curve (issue 31): per row and training fraction, the seed mean and std of the metric, rows
put back together across fractions, a row that did not learn kept and marked, and one figure per dataset."""

from __future__ import annotations

import math

import pytest
from factories import make_record, metric_values

from bench.errors import ConfigError
from bench.reports.data_efficiency import data_efficiency, data_efficiency_figure, plot_data_efficiency

COLLAPSED_VAL = metric_values({"balanced_accuracy": 0.5, "confusion_matrix": [[50, 0], [50, 0]]}, ("a", "b"))

# (backbone, epochs, fraction, test accuracy of seeds 0, 1, 2 (None: no such seed), did not learn on validation)
# make_record's balanced accuracy is the accuracy - 0.1.
RUNS = [
    ("resnet18", 2, 0.1, (0.6, 0.7, 0.8), False),
    ("resnet18", 2, 0.5, (0.75, 0.85, None), False),
    ("resnet18", 2, 1.0, (0.9, 0.9, 0.9), False),
    ("resnet18", 1, 0.1, (0.65, None, None), False),  # another experiment (epochs): another row, labelled apart
    ("resnet18", 1, 1.0, (0.8, None, None), False),
    ("vgg16", 2, 0.1, (0.6, 0.6, None), True),  # collapsed on validation: kept, not ranked
    ("vgg16", 2, 1.0, (0.7, 0.9, None), False),
]

# (row, fraction, n, balanced accuracy mean, std, ranked)
EXPECTED = [
    ("resnet18 scratch e1", 0.1, 1, 0.55, math.nan, True),
    ("resnet18 scratch e1", 1.0, 1, 0.7, math.nan, True),
    ("resnet18 scratch e2", 0.1, 3, 0.6, 0.1, True),
    ("resnet18 scratch e2", 0.5, 2, 0.7, math.sqrt(0.005), True),
    ("resnet18 scratch e2", 1.0, 3, 0.8, 0.0, True),
    ("vgg16 scratch", 0.1, 2, 0.5, 0.0, False),
    ("vgg16 scratch", 1.0, 2, 0.7, math.sqrt(0.02), True),
]


def records(dataset: str = "d"):
    out = []
    for backbone, epochs, fraction, accs, collapsed in RUNS:
        for seed, acc in enumerate(accs):
            if acc is None:
                continue
            record = make_record(backbone, seed, acc, dataset=dataset, epochs=epochs, train_fraction=fraction)
            if collapsed:
                record.val = COLLAPSED_VAL
            out.append(record)
    out.append(make_record("resnet18", 3, status="failed", dataset=dataset, train_fraction=0.1))  # counted, no score
    return out


@pytest.fixture(scope="module")
def table():
    return data_efficiency(records(), "d")


@pytest.mark.parametrize("row, fraction, n, mean, std, ranked", EXPECTED)
def test_each_row_and_fraction_has_its_seed_mean_and_std(table, row, fraction, n, mean, std, ranked):
    (line,) = table[(table["row"] == row) & (table["fraction"] == fraction)].itertuples()
    assert line.n == n and line.ranked == ranked
    assert line.balanced_accuracy_mean == pytest.approx(mean)
    assert line.balanced_accuracy_std == pytest.approx(std, nan_ok=True)  # NaN for one seed: no spread


def test_rows_are_put_back_together_across_fractions_and_nothing_else(table):
    assert len(table) == len(EXPECTED)  # one line per (row, fraction): no row split by its fraction, none merged
    assert table.groupby("row")["experiment"].nunique().eq(1).all()  # the row's id leaves the fraction out
    assert table["experiment"].nunique() == 3
    assert table.loc[(table["row"] == "resnet18 scratch e2") & (table["fraction"] == 0.1), "failed"].item() == 1
    assert table.loc[table["row"] == "vgg16 scratch", "did_not_learn"].tolist() == [2, 0]
    assert table.attrs["majority"] == pytest.approx(0.5)  # always the larger training class: balanced accuracy 0.5


def test_the_sort_metric_is_any_headline_metric_and_nothing_else():
    auc = data_efficiency(records(), "d", "auc")
    assert auc.loc[0, "auc_mean"] == pytest.approx(0.75)  # resnet18 scratch e1 at 0.1: make_record's accuracy + 0.1
    with pytest.raises(ConfigError, match="unknown metric 'speed'"):
        data_efficiency(records(), "d", "speed")
    with pytest.raises(ConfigError, match="no records of dataset 'e'"):
        data_efficiency(records(), "e")


def test_the_figure_marks_the_floor_and_the_points_that_did_not_learn(table):
    fig = data_efficiency_figure(table)
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "majority baseline (0.500)" in texts
    assert "vgg16 scratch (✗ at 10%)" in texts and any("did not learn" in t for t in texts)
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["10%\n100 img", "50%\n100 img", "100%\n100 img"]


def test_a_dataset_with_several_fractions_is_drawn_and_one_with_one_is_not(tmp_path):
    single = [make_record("resnet18", s, dataset="one") for s in (0, 1)]
    written = plot_data_efficiency(records() + single, "balanced_accuracy", tmp_path)
    assert list(written) == ["d"]
    assert sorted(p.name for p in written["d"]) == [
        "d-data-efficiency.csv",
        "d-data-efficiency.png",
        "d-data-efficiency.svg",
    ]
    assert all(p.stat().st_size > 0 for p in written["d"])
