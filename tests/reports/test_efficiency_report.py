"""The report's data-efficiency section (issue 31): the curve figure and one sentence generated from the records,
for a dataset whose records hold several training fractions and for no other."""

from __future__ import annotations

import re

import pytest
from factories import make_record, write_run
from test_data_efficiency import records as fraction_records

from bench.reports.data_efficiency import data_efficiency, efficiency_sentence
from bench.reports.html import EFFICIENCY, build_report, render_html
from bench.runs.record import load_records


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A report over dataset d (two backbones at 25% and 100% of the training split) and dataset one (100% only)."""
    root = tmp_path_factory.mktemp("efficiency")
    runs = [
        make_record("resnet18", 0, 0.70, dataset="d", train_fraction=0.25),
        make_record("resnet18", 1, 0.74, dataset="d", train_fraction=0.25),
        make_record("resnet18", 0, 0.90, dataset="d"),
        make_record("resnet18", 1, 0.92, dataset="d"),
        make_record("vgg16", 0, 0.80, dataset="d", train_fraction=0.25),
        make_record("vgg16", 0, 0.85, dataset="d"),
        make_record("resnet18", 0, 0.90, dataset="one"),
    ]
    for record in runs:
        write_run(record, root)
    records = load_records(root)
    return records, build_report(records, root, "balanced_accuracy", "p50")


def test_a_dataset_with_several_fractions_gets_its_curve_and_sentence(built):
    _, report = built
    assert list(report.efficiency) == ["d"]
    html = report.html.read_text()
    assert f'<a href="#{EFFICIENCY}">Data efficiency</a>' in html
    section = html[html.index(f'<h2 id="{EFFICIENCY}">') : html.index('<h2 id="provenance">')]
    assert re.findall(r'<h3 id="([^"]+)">', section) == [f"{EFFICIENCY}-d"]  # dataset one: a single fraction
    assert section.count('alt="d: test balanced_accuracy against the share of the training split"') == 1
    # make_record's balanced accuracy is its accuracy - 0.1; its training split holds 100 images at any share
    assert (
        "<p>With 25% of the training split (100 images), the best row is vgg16 scratch at 0.700 test "
        "balanced_accuracy; with 100% of the training split (100 images), resnet18 scratch leads at 0.810 ± 0.014, "
        "and no row reaches 0.810 with less than 100%.</p>"
    ) in section


def test_no_section_without_a_curve(built):
    """No figure, no section and no link: the page of records without several fractions has none."""
    records, report = built
    page = render_html(records, report.plotted, "balanced_accuracy", "p50", report.beyond, efficiency={})
    assert EFFICIENCY not in page and "Data efficiency" not in page
    assert page.index('<h2 id="dataset-one">') < page.index('<h2 id="provenance">')  # the rest of the page as before


def test_the_sentence_names_the_rows_that_reach_the_leader_with_less_data():
    table = data_efficiency(fraction_records(), "d")
    assert efficiency_sentence(table) == (
        "With 10% of the training split (100 images), the best row is resnet18 scratch e2 at 0.600 ± 0.100 test "
        "balanced_accuracy; with 100% of the training split (100 images), resnet18 scratch e2 leads at "
        "0.800 ± 0.000, and no row reaches 0.800 with less than 100%."
    )
    better = table.copy()
    better.attrs = dict(table.attrs)
    at = (better["row"] == "vgg16 scratch") & (better["fraction"] == 0.1)
    better.loc[at, ["balanced_accuracy_mean", "ranked"]] = 0.85, True  # learned after all, and beyond the leader
    better.loc[(better["row"] == "resnet18 scratch e2") & (better["fraction"] == 0.5), "balanced_accuracy_mean"] = 0.8
    assert efficiency_sentence(better).endswith(
        "0.800 is reached with less data by vgg16 scratch from 10%, resnet18 scratch e2 from 50%."
    )
    assert efficiency_sentence(better).startswith("With 10% of the training split (100 images), the best row is vgg16")
