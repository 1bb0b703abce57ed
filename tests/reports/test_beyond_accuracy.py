"""The report's sections beyond accuracy: each appears only where the records hold its figures, a dataset without
them gets a line saying why, and robustness comes with its plot against latency (its own Pareto front)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from factories import make_record, write_run
from test_robustness_columns import corrupted, external

from bench.evaluation.scores import TestScores
from bench.reports.beyond_accuracy import Beyond, beyond_accuracy, candidate_groups, section_frame, sections_html
from bench.reports.leaderboard import LATENCY_AXES, datasets_in, leaderboard
from bench.reports.robustness_plot import SCORE, robustness_table
from bench.runs.record import load_records, probs_path

P50 = LATENCY_AXES["p50"]
LABELS = np.array([0] * 40 + [1] * 60)  # the factory's test class counts


def scores(quality: float, seed: int, with_val: bool = False) -> TestScores:
    """Right on about ``quality`` of the 100 test images, with validation logits where asked."""
    rng = np.random.default_rng(seed)
    right = rng.random(LABELS.size) < quality
    logits = np.where(np.eye(2)[np.where(right, LABELS, 1 - LABELS)] > 0, 1.5, -1.5) + rng.normal(0, 0.3, (100, 2))
    val = None
    if with_val:
        val_labels = rng.integers(0, 2, 40)
        val_logits = np.eye(2)[val_labels] * 2.0 + rng.normal(0, 1, (40, 2))
        val = TestScores.from_logits([f"v{i}" for i in range(40)], val_labels, val_logits)
    return TestScores.from_logits([f"img{i}" for i in range(100)], LABELS, logits, val)


def write(root: Path, backbone: str, seed: int, acc: float, dataset: str = "d", **kwargs) -> None:
    """A run with its saved test scores; ``eval_sets`` and ``with_val`` as asked, the rest to make_record."""
    eval_sets, with_val = kwargs.pop("eval_sets", {}), kwargs.pop("with_val", False)
    record = make_record(backbone, seed, acc, dataset=dataset, **kwargs)
    record.eval_sets = eval_sets
    write_run(record, root)
    scores(acc, 10 * seed + len(backbone), with_val).save(probs_path(record.path))


def grown(records, tmp_path: Path) -> Beyond:
    tables = {d: leaderboard(records, d) for d in datasets_in(records)}
    return beyond_accuracy(records, tables, P50, tmp_path / "plots")


def headings(parts: list[str]) -> list[str]:
    return re.findall(r'<h2 id="([^"]+)">', "".join(parts))


def test_records_without_saved_scores_or_eval_sets_get_no_section(tmp_path):
    records = [make_record("a", acc=0.9), make_record("b", acc=0.8)]  # never saved: no probabilities beside them
    assert candidate_groups(records) == ()
    beyond = grown(records, tmp_path)
    assert beyond.groups == () and sections_html(beyond) == []


def test_saved_scores_give_calibration_and_scaling_without_validation_scores_is_marked(tmp_path):
    """No subgroup metadata for dataset d (no dataset entry): calibration alone; a row without validation scores
    has its after-scaling cells cross-fitted on test and marked ‡, one with them fitted on validation."""
    for seed in (0, 1):
        write(tmp_path, "a", seed, 0.9, with_val=True)
        write(tmp_path, "b", seed, 0.8)
    beyond = grown(load_records(tmp_path), tmp_path)
    assert candidate_groups(load_records(tmp_path)) == ("calibration", "subgroups")
    assert beyond.groups == ("calibration",)
    assert headings(sections_html(beyond)) == ["calibration"]
    frame = section_frame(beyond.tables["d"], "calibration").set_index("row")
    for column in ("ECE after temp. scaling", "Brier after temp. scaling"):
        assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3} ‡", frame.loc["b", column])
        assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", frame.loc["a", column])
    assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", frame.loc["a", "temperature"])
    assert re.fullmatch(r"\d\.\d{3} ± \d\.\d{3}", frame.loc["a", "Brier after temp. scaling"])
    assert [p.name for p in beyond.reliability["d"]] == ["d-reliability.png"]


@pytest.fixture(scope="module")
def evalsets(tmp_path_factory) -> tuple[Path, Beyond]:
    """Dataset d, two seeds: resnet18 (the reference, 2 ms), b1 (more accurate, more robust, 3 ms), fragile (the most
    accurate on clean images, the least robust, 4 ms) and untimed (robust, its latency noisy); b1 was also scored
    on an external set. Dataset e: no eval set at all."""
    root = tmp_path_factory.mktemp("evalsets")
    for seed in (0, 1):
        write(root, "resnet18", seed, 0.80, ms=2.0, eval_sets={"corrupted": corrupted((0.6, 0.4), (0.8, 0.6))})
        b1 = {"corrupted": corrupted((0.8, 0.6), (0.9, 0.7)), "external:e": external(0.7, 0.8)}
        write(root, "b1", seed, 0.90, ms=3.0, eval_sets=b1)
        write(root, "fragile", seed, 0.99, ms=4.0, eval_sets={"corrupted": corrupted((0.5, 0.5), (0.5, 0.5))})
        write(root, "untimed", seed, 0.85, noisy=True, eval_sets={"corrupted": corrupted((0.9, 0.9), (0.9, 0.9))})
        write(root, "plain", seed, 0.80, dataset="e")
    return root, grown(load_records(root), root)


def test_eval_sets_give_robustness_and_external_sections(evalsets):
    _, beyond = evalsets
    assert beyond.groups == ("calibration", "robustness", "external")
    html = "".join(sections_html(beyond))
    assert headings(sections_html(beyond)) == ["calibration", "robustness", "external"]
    frame = section_frame(beyond.tables["d"], "robustness").set_index("row")
    # b1: mean BE 0.25 in seed 0, the same in seed 1 (the same set): balanced accuracy under corruption 0.75
    assert frame.loc["b1", "mean BE (corruptions)"] == "0.250 ± 0.000" and frame.loc["b1", SCORE] == "0.750 ± 0.000"
    assert frame.loc["resnet18", "rel. BE"] == "1.000"
    external_frame = section_frame(beyond.tables["d"], "external").set_index("row")
    assert external_frame.loc["b1", "external:e bal. acc."] == "0.700 ± 0.000"
    assert external_frame.loc["fragile", "external:e bal. acc."] == "n/a"
    assert "<b>e</b>: no corrupted eval set (every row)" in html  # dataset e holds none: said, no empty table
    assert "<b>e</b>: no row was scored on an external set" in html
    assert "Not in the plot, for want of a batch-1 latency: untimed (scratch)." in html


def test_robustness_is_plotted_against_latency_with_its_own_front(evalsets):
    root, beyond = evalsets
    assert [p.name for p in beyond.robustness["d"]] == ["d-robustness.png", "d-robustness.svg"]
    assert "e" not in beyond.robustness
    svg = (root / "plots" / "d-robustness.svg").read_text()
    assert f"test {SCORE} vs latency" in svg and "fragile" in svg and "untimed" not in svg
    board = beyond.tables["d"]
    plotted = robustness_table(board, P50).set_index("backbone")
    clean = board.set_index("backbone")
    assert clean.loc["fragile", "pareto"] and not plotted.loc["fragile", "pareto"]  # most accurate, least robust
    assert plotted.loc["resnet18", "pareto"] and plotted.loc["b1", "pareto"] and not plotted["tied"].any()
    assert plotted.loc["b1", f"{SCORE}_mean"] == pytest.approx(0.75)
    assert plotted.loc["majority", f"{SCORE}_mean"] == clean.loc["majority", "balanced_accuracy_mean"]


def test_a_dataset_with_subgroup_metadata_gets_the_subgroups_section(project, tmp_path):
    entry = (project / "datasets" / "tiny.toml").read_text()
    (project / "datasets" / "meta.toml").write_text(
        entry.replace('name = "tiny"', 'name = "meta"')
        + '[subgroups]\nmetadata = "meta.csv"\nid_column = "image_id"\ncolumns = { sex = "sex" }\n'
    )
    (project / "data" / "meta.csv").write_text(
        "image_id,sex\n" + "".join(f"img{i},{'female' if i % 2 else 'male'}\n" for i in range(100))
    )
    for seed in (0, 1):
        write(tmp_path / "r", "a", seed, 0.9, dataset="meta")
    beyond = grown(load_records(tmp_path / "r"), tmp_path)
    assert beyond.groups == ("calibration", "subgroups")
    frame = section_frame(beyond.tables["meta"], "subgroups").iloc[0]
    assert frame["worst group"] in ("sex female (n=50)", "sex male (n=50)")
    assert frame["gap between"] in ("female vs male", "male vs female") and frame["largest gap"].endswith("(sex)")
    html = "".join(sections_html(beyond))
    assert '<h2 id="subgroups">Subgroups</h2>' in html
    groups = html[html.index("<summary>Every group of every row") :]
    assert '<td class="text">female</td>' in groups and '<td class="text">male</td>' in groups
