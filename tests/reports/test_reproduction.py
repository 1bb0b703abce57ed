"""Published vs measured: the comparison table behind docs/reproduction.md."""

from __future__ import annotations

import math

import pytest
from factories import make_record

from bench.errors import ConfigError
from bench.reports.reproduction import display_frame, reproduction_table, write_reproduction
from bench.runs.sweep import Published, load_sweep

ANCHOR = Published(
    dataset="pneumoniamnist", model="ResNet-18 (28)", source="paper", figures={"accuracy": 0.854, "auc": 0.944}
)


def _record(backbone: str, seed: int, accuracy: float, auc: float, dataset="pneumoniamnist", status="ok", **kw):
    metrics = {"accuracy": accuracy, "auc": auc}
    return make_record(backbone, seed, protocol="medmnist-v2", dataset=dataset, status=status, metrics=metrics, **kw)


@pytest.mark.parametrize(
    "scores, mean_acc, within",
    [
        ([(0.84, 0.94), (0.86, 0.95)], 0.85, True),  # both metrics within 0.02
        ([(0.88, 0.94), (0.89, 0.95)], 0.885, False),  # accuracy 0.031 above: beyond the tolerance either way
        ([(0.85, 0.90)], 0.85, False),  # AUC 0.044 below
    ],
)
def test_mean_delta_and_verdict(scores, mean_acc, within):
    records = [_record("r18", seed, acc, auc) for seed, (acc, auc) in enumerate(scores)]
    records.append(_record("r18", 9, 0.1, 0.1, status="failed"))  # failed runs are not averaged in
    records.append(_record("r18", 0, 0.1, 0.1, dataset="dermamnist"))  # nor runs on another dataset
    row = reproduction_table(records, (ANCHOR,)).iloc[0]
    assert row["n"] == len(scores)
    assert row["accuracy_mean"] == pytest.approx(mean_acc)
    assert row["accuracy_delta"] == pytest.approx(mean_acc - 0.854)
    assert math.isnan(row["accuracy_std"]) == (len(scores) == 1)
    assert bool(row["accuracy_within"] and row["auc_within"]) is within
    assert display_frame(reproduction_table(records, (ANCHOR,)))["within tolerance"][0].startswith(
        "yes" if within else "no"
    )


def test_one_row_per_backbone_and_markdown(tmp_path):
    records = [_record("a", 0, 0.85, 0.94), _record("b", 0, 0.80, 0.90), _record("b", 1, 0.82, 0.92)]
    table = reproduction_table(records, (ANCHOR,))
    assert list(table["backbone"]) == ["a", "b"] and list(table["n"]) == [1, 2]
    text = write_reproduction(table, tmp_path / "comparison.md", "bench reproduction --sweep s").read_text()
    assert "0.810 ± 0.014 (0.854, Δ -0.044)" in text and "Published: ResNet-18 (28): paper." in text
    assert text.endswith("Command: `bench reproduction --sweep s`\n")
    assert (tmp_path / "comparison.csv").exists()


def test_a_sweep_without_anchors_is_refused():
    with pytest.raises(ConfigError, match="no \\[\\[published\\]\\]"):
        reproduction_table([_record("a", 0, 0.85, 0.94)], ())


def test_the_medmnist_sweep_carries_the_papers_figures():
    anchors = {p.dataset: p.values() for p in load_sweep("medmnist-v2").published}
    assert anchors == {
        "pneumoniamnist": {"accuracy": 0.854, "auc": 0.944},
        "dermamnist": {"accuracy": 0.735, "auc": 0.917},
    }


def test_malformed_anchor_names_the_field(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\n[[group]]\nbackbones = ["resnet18"]\ndatasets = ["isic"]\n'
        '[[published]]\ndataset = "isic"\nmodel = "m"\nsource = "x"\naccuracy = "high"\n'
    )
    with pytest.raises(ConfigError, match=r"s.toml.*accuracy"):
        load_sweep(path)


def test_a_backbone_with_two_experiments_has_a_row_each(tmp_path):
    """Seeds of other epochs are another experiment: never averaged into one reproduction figure."""
    records = [_record("r18", 0, 0.85, 0.94), _record("r18", 1, 0.86, 0.95), _record("r18", 0, 0.60, 0.70, epochs=1)]
    table = reproduction_table(records, (ANCHOR,)).set_index("backbone")
    assert table["n"].to_dict() == {"r18 (medmnist-v2 e1)": 1, "r18 (medmnist-v2 e2)": 2}
    assert table.loc["r18 (medmnist-v2 e1)", "accuracy_mean"] == pytest.approx(0.60)


def test_a_sweeps_records_are_found_by_experiment_and_seed(project, make_record):
    """Another run in the folder (other epochs, or another dataset's) is not the sweep's."""
    from bench.runs.identity import experiment_id
    from bench.runs.planned import sweep_records, sweep_runs
    from bench.runs.resolve import experiment_identity
    from bench.runs.spec import RunSpec

    spec = RunSpec("test_resnet", "tiny", "scratch", epochs=1)
    mine = make_record("test_resnet", 0, dataset="tiny")
    mine.identity = experiment_identity(spec)
    other = make_record("test_resnet", 0, dataset="tiny", epochs=2)
    assert sweep_records([mine, other], sweep_runs([spec])) == [mine]
    assert {experiment_id(mine.identity)} == {e for e, _ in sweep_runs([spec])}


@pytest.mark.parametrize("width", [50, 60, 80, 200])
def test_a_narrow_terminal_keeps_each_rows_verdict(width):
    """Was: at 80 columns the verdict column was the one left out."""
    import io

    from rich.console import Console

    from bench.cli.output import show
    from bench.reports.reproduction import rich_table

    records = [_record("resnet18_cifar_stem", s, 0.84 + s / 100, 0.94) for s in (0, 1)]
    records += [_record("resnet18", s, 0.90, 0.95) for s in (0, 1)]
    table = reproduction_table(records, (ANCHOR,))
    console = Console(file=io.StringIO(), force_terminal=True, width=width, color_system=None)
    show(rich_table(table, "s"), out=console)
    text = console.file.getvalue()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
    rows = [line for line in text.splitlines() if "resnet18" in line]
    assert [("yes (±0.02)" in r, "no (±0.02)" in r) for r in rows] == [(False, True), (True, False)]
    assert "within tolerance" not in " ".join(text.split(f"not shown at {width} columns:")[1:])
