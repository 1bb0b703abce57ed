"""Data efficiency at a fixed number of optimiser steps: ``fraction_budget = "steps"`` trains a share ``f`` of the
training split for the group's epochs times ``1/f`` (rounded up, per phase), ``"epochs"`` (the default) changes
nothing, a budget that cannot apply is one line naming the file and field (or the option), and a data-efficiency
table of a "steps" sweep still joins each backbone's fractions into one row."""

from __future__ import annotations

import dataclasses

import pytest
from console import run_bench
from factories import make_record

from bench.errors import ConfigError
from bench.reports.data_efficiency import data_efficiency, without_fraction
from bench.runs.plan import SweepRequest, sweep_specs
from bench.runs.planned import plan_runs
from bench.runs.sweep import Group, Sweep, load_sweep

FRACTIONS = "train_fractions = [0.1, 0.25, 0.5, 1]"


def sweep_file(tmp_path, *lines: str, name: str = "s"):
    path = tmp_path / f"{name}.toml"
    body = "\n".join(lines)
    path.write_text(f'name = "s"\n[[group]]\nbackbones = ["a"]\ndatasets = ["tiny"]\n{body}\n')
    return path


@pytest.mark.parametrize(
    "epochs, expected",
    [
        ("2", [20, 8, 4, 2]),  # 10x, 4x, 2x, 1x
        ("3", [30, 12, 6, 3]),  # 3 / 0.1 is 30.000000000000004 in floats: still 30
        ("[1, 2]", [(10, 20), (4, 8), (2, 4), (1, 2)]),  # a staged protocol's phases, each scaled
    ],
)
def test_steps_scale_each_fractions_epochs_by_one_over_the_fraction(tmp_path, epochs, expected):
    path = sweep_file(tmp_path, FRACTIONS, f"epochs = {epochs}", 'fraction_budget = "steps"')
    specs = load_sweep(path).expand()
    assert [s.train_fraction for s in specs] == [0.1, 0.25, 0.5, 1.0]
    assert [s.epochs for s in specs] == expected
    assert [s.fraction_budget for s in specs] == ["steps", "steps", "steps", "epochs"]  # 100%: the same run either way


def test_steps_round_up_where_the_quotient_is_not_whole():
    group = Group(("a",), ("tiny",), epochs=(3, 1), train_fractions=(0.4, 0.3), fraction_budget="steps")
    assert [s.epochs for s in Sweep("s", group=(group,)).expand()] == [(8, 3), (10, 4)]  # 7.5, 2.5; 10, 3.33


def test_the_epochs_budget_leaves_specs_and_keys_as_they_were(project, tmp_path):
    before = Sweep("s", group=(Group(("test_resnet",), ("tiny",), epochs=1, train_fractions=(0.5, 1.0)),)).expand()
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\n[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["tiny"]\nepochs = 1\n'
        'train_fractions = [0.5, 1]\nfraction_budget = "epochs"\n'
    )
    after = load_sweep(path).expand()
    assert after == before
    assert [s.to_dict() for s in after] == [s.to_dict() for s in before]
    assert all("fraction_budget" not in s.to_dict() for s in after)  # records read as before
    keys = [p.key for p in plan_runs(after, tmp_path / "results")]
    assert keys == [p.key for p in plan_runs(before, tmp_path / "results")]
    steps = dataclasses.replace(after[0], epochs=2, fraction_budget="steps")  # the same run at 50% under "steps"
    (scaled,) = plan_runs([steps], tmp_path / "results")
    assert scaled.key != keys[0]  # its epochs differ, and they are in the identity
    assert plan_runs([dataclasses.replace(steps, fraction_budget="epochs")], tmp_path / "results")[0].key == scaled.key


@pytest.mark.parametrize(
    "lines, problem",
    [
        ((FRACTIONS, "epochs = 2", 'fraction_budget = "minutes"'), "is 'minutes'; expected one of 'epochs', 'steps'"),
        ((FRACTIONS, 'fraction_budget = "steps"'), "is 'steps' but no epochs are given"),
        (("epochs = 2", 'fraction_budget = "steps"'), "is 'steps' but train_fractions has no share below 1"),
        (("train_fractions = [1]", "epochs = 2", 'fraction_budget = "steps"'), "has no share below 1"),
    ],
    ids=["unknown", "no-epochs", "no-fractions", "only-whole"],
)
def test_a_budget_that_cannot_apply_names_the_file_and_field(tmp_path, lines, problem):
    with pytest.raises(ConfigError, match=r"s\.toml: field 'group\[0\]\.fraction_budget' ") as err:
        load_sweep(sweep_file(tmp_path, *lines))
    assert problem in str(err.value) and "\n" not in str(err.value)


def test_the_command_lines_epochs_are_scaled_under_steps(project):
    request = SweepRequest(
        backbones=("test_resnet",), datasets=("tiny",), epochs=2, train_fractions=(0.25, 1.0), fraction_budget="steps"
    )
    _, specs = sweep_specs(request)
    assert [(s.train_fraction, s.epochs) for s in specs] == [(0.25, 8), (1.0, 2)]
    _, plain = sweep_specs(dataclasses.replace(request, fraction_budget=None))
    assert [(s.train_fraction, s.epochs) for s in plain] == [(0.25, 2), (1.0, 2)]  # --epochs as before


ADHOC = ("run", "--backbones", "test_resnet", "--datasets", "tiny", "--device", "cpu")
CLI_CASES = [
    ((*ADHOC, "--fraction-budget", "minutes"), "--fraction-budget takes epochs or steps, got 'minutes'"),
    (
        (*ADHOC, "--train-fractions", "0.1,1", "--fraction-budget", "steps"),
        "--train-fractions 0.1,1 --fraction-budget steps: the ad-hoc sweep: field 'fraction_budget' is 'steps' but "
        "no epochs are given",
    ),
    ((*ADHOC, "--epochs", "2", "--fraction-budget", "steps"), "field 'fraction_budget' is 'steps' but train_fractions"),
    (("run", "--sweep", "{sweep}"), "s.toml: field 'group[0].fraction_budget' is 'steps' but no epochs"),
    (
        ("run", "--sweep", "{valid}", "--train-fractions", "1"),
        "--train-fractions 1: --sweep {valid}, group 1: field 'fraction_budget' is 'steps' but train_fractions has no",
    ),
]


@pytest.mark.parametrize("args, message", CLI_CASES, ids=["unknown", "no-epochs", "no-fractions", "file", "override"])
def test_the_cli_refuses_in_one_line_with_exit_2(project, tmp_path, monkeypatch, capsys, args, message):
    paths = {
        "sweep": str(sweep_file(tmp_path, FRACTIONS, 'fraction_budget = "steps"')),  # no epochs to scale
        "valid": str(sweep_file(tmp_path, FRACTIONS, "epochs = 2", 'fraction_budget = "steps"', name="valid")),
    }
    out = run_bench(monkeypatch, capsys, *(a.format(**paths) for a in args), "--results-dir", str(tmp_path / "r"))
    shown = " ".join((out.stdout + out.stderr).split())
    assert out.status == 2, shown
    assert "Traceback" not in out.stdout + out.stderr
    assert message.format(**paths) in shown
    assert len((out.stdout + out.stderr).strip().splitlines()) == 1


def test_a_steps_sweeps_table_has_one_row_per_backbone_with_every_fraction():
    group = Group(("resnet18", "vgg16"), ("d",), seeds=(0, 1), epochs=2, train_fractions=(0.1, 0.25, 0.5, 1.0),
                  fraction_budget="steps")  # fmt: skip
    records = []
    for spec in Sweep("s", group=(group,)).expand():
        record = make_record(spec.backbone, spec.seed, 0.6 + spec.train_fraction / 4, dataset="d", epochs=spec.epochs,
                             train_fraction=spec.train_fraction)  # fmt: skip
        record.spec = spec  # as the runner records it: with its fraction_budget
        records.append(record)
    assert len({r.experiment for r in records}) == 8  # every (backbone, fraction) its own experiment
    assert len({without_fraction(r).experiment for r in records}) == 2  # a row per backbone
    table = data_efficiency(records, "d")
    assert sorted(set(table["row"])) == ["resnet18 scratch", "vgg16 scratch"]
    for _, points in table.groupby("row"):
        assert list(points["fraction"]) == [0.1, 0.25, 0.5, 1.0]
        assert list(points["n"]) == [2, 2, 2, 2]
    at_tenth = [r for r in records if r.spec.train_fraction == 0.1]
    assert {r.identity.protocol.phases[0].epochs for r in at_tenth} == {20}  # the identity keeps what trained


def test_an_epochs_run_keeps_its_epochs_in_its_row():
    fixed = make_record(epochs=20, train_fraction=0.1)  # the "epochs" budget: 20 epochs at 10% are 20 epochs
    assert without_fraction(fixed).identity.protocol.phases[0].epochs == 20
    steps = make_record(epochs=20, train_fraction=0.1)
    steps.spec = dataclasses.replace(steps.spec, fraction_budget="steps")
    assert without_fraction(steps).identity.protocol.phases[0].epochs == 2
    assert without_fraction(steps).experiment == without_fraction(make_record(epochs=2)).experiment
