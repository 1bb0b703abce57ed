"""The subgroup-gap plot (issue 31): per row one ● at its whole-split balanced accuracy and one ◆ at its worst
group's, each bar spanning the bootstrap CI; a row without a worst group named with its reason, never dropped
silently; drawn and shown in the report's subgroups section only for a dataset whose rows have a worst group."""

from __future__ import annotations

import re

import numpy as np
import pytest
from factories import add_sex_dataset, make_record, write_run
from sklearn.metrics import balanced_accuracy_score
from test_beyond_accuracy import grown, scores
from test_plots import collection

from bench.reports.beyond_accuracy import sections_html
from bench.reports.leaderboard import leaderboard
from bench.reports.subgroup_plot import WHOLE, WORST, plot_subgroups, subgroup_figure
from bench.runs.record import load_records, probs_path


def write(root, backbone: str, seed: int, quality: float, dataset: str) -> None:
    """A run whose recorded test balanced accuracy is its saved scores' (as a real run's is)."""
    saved = scores(quality, 10 * seed + len(backbone))
    ba = balanced_accuracy_score(saved.labels, saved.probs.argmax(axis=1))
    values = {"accuracy": quality, "balanced_accuracy": ba, "macro_f1": ba, "auc": ba}
    record = write_run(make_record(backbone, seed, quality, dataset=dataset, metrics=values), root)
    saved.save(probs_path(record.path))


@pytest.fixture
def meta(project, tmp_path):
    """Dataset meta (sex by image, 50 of each): good and poor with saved scores, unsaved without (two seeds each);
    dataset d (no dataset entry, so no metadata): plain, with saved scores."""
    add_sex_dataset(project, ["female" if i % 2 else "male" for i in range(100)])
    root = tmp_path / "r"
    for seed in (0, 1):
        write(root, "good", seed, 0.95, dataset="meta")
        write(root, "poor", seed, 0.70, dataset="meta")
        write_run(make_record("unsaved", seed, 0.90, dataset="meta"), root)
        write(root, "plain", seed, 0.80, dataset="d")
    return root, grown(load_records(root), root)


def drawn(board):
    return board[board["worst_group_balanced_accuracy_mean"].notna()]


def test_one_marker_per_row_at_its_seed_means_in_leaderboard_order(meta):
    _, beyond = meta
    board = beyond.tables["meta"]
    (ax,) = subgroup_figure(board, "meta").axes
    rows = drawn(board)
    assert list(rows["backbone"]) == ["good", "poor"]  # the leaderboard's order, rank 1 first
    assert [t.get_text() for t in ax.get_yticklabels()] == ["good", "poor"]
    whole, worst = collection(ax, WHOLE).get_offsets(), collection(ax, WORST).get_offsets()
    assert len(whole) == len(worst) == 2
    np.testing.assert_allclose(whole[:, 0], rows["balanced_accuracy_mean"])
    np.testing.assert_allclose(worst[:, 0], rows["worst_group_balanced_accuracy_mean"])
    assert (worst[:, 0] <= whole[:, 0]).all()  # a worst group, not a best one
    assert ax.yaxis_inverted()  # rank 1 at the top


@pytest.mark.parametrize(
    "label, prefix", [("_whole CI", "balanced_accuracy"), ("_worst CI", "worst_group_balanced_accuracy")]
)
def test_each_bar_spans_its_bootstrap_interval(meta, label, prefix):
    _, beyond = meta
    board = beyond.tables["meta"]
    (ax,) = subgroup_figure(board, "meta").axes
    rows = drawn(board)
    segments = collection(ax, label).get_segments()
    assert len(segments) == 2
    np.testing.assert_allclose([s[0][0] for s in segments], rows[f"{prefix}_ci95_low"])
    np.testing.assert_allclose([s[1][0] for s in segments], rows[f"{prefix}_ci95_high"])
    assert (rows[f"{prefix}_ci95_low"] < rows[f"{prefix}_ci95_high"]).all()  # a real interval, not a dot


def test_the_side_names_the_worst_group_and_the_largest_gap(meta):
    _, beyond = meta
    (ax,) = subgroup_figure(beyond.tables["meta"], "meta").axes
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 2
    for text in texts:
        assert re.fullmatch(r"sex (fe)?male \(n=50\)  ·  largest gap \d\.\d{3} ± \d\.\d{3} \(sex: \w+ vs \w+\)", text)


def test_a_row_without_a_worst_group_is_named_as_left_out_with_its_reason(meta):
    _, beyond = meta
    board = beyond.tables["meta"]
    fig = subgroup_figure(board, "meta")
    caption = fig.get_supxlabel()
    assert "Not drawn, for want of a worst group: unsaved (" in caption
    reason = board.set_index("backbone").loc["unsaved", "subgroups_note"]
    assert reason and reason in caption.replace("\n", " ")
    html = "".join(sections_html(beyond))
    assert f"Not drawn, for want of a worst group: unsaved ({reason})." in html


def test_the_figure_is_written_and_shown_only_where_rows_have_a_worst_group(meta):
    root, beyond = meta
    assert [p.name for p in beyond.subgroups["meta"]] == ["meta-subgroups.png", "meta-subgroups.svg"]
    assert "d" not in beyond.subgroups and not (root / "plots" / "d-subgroups.png").exists()
    svg = (root / "plots" / "meta-subgroups.svg").read_text()
    assert "worst patient group" in svg and "unsaved" in svg  # named in the caption
    html = "".join(sections_html(beyond))
    section = html[html.index('<h2 id="subgroups">') :]
    assert section.count('alt="meta: worst-group balanced_accuracy against the whole test split"') == 1
    assert "<b>d</b>: no dataset entry to read subgroups from" in section  # said, no figure
    assert html.count('class="subgroups"') == 1


def test_nothing_is_drawn_without_subgroup_columns(tmp_path):
    records = [make_record("a", s, 0.9) for s in (0, 1)]
    assert plot_subgroups(leaderboard(records, "d"), "d", tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_bench_leaderboard_with_subgroup_columns_writes_the_figure_too(meta, monkeypatch, capsys):
    from console import run_bench

    root, _ = meta
    (root / "plots" / "meta-subgroups.png").unlink()
    out = run_bench(monkeypatch, capsys, "leaderboard", "--results-dir", str(root), "--columns", "subgroups")
    assert out.status == 0, out.stderr
    assert (root / "plots" / "meta-subgroups.png").is_file() and "meta-subgroups.png" in out.stderr


def test_bench_plot_draws_each_question_the_records_answer(meta, monkeypatch, capsys):
    """`bench plot` draws the subgroup gaps and reliability diagrams beside the trade-off plots: meta has groups and
    saved scores, d saved scores only, so d gets a reliability diagram and no subgroup figure."""
    from console import run_bench

    root, _ = meta
    for old in (root / "plots").glob("*.png"):
        old.unlink()
    out = run_bench(monkeypatch, capsys, "plot", "--results-dir", str(root))
    assert out.status == 0, out.stderr
    shown = out.stdout + out.stderr
    assert "meta subgroup gaps: " in shown and (root / "plots" / "meta-subgroups.png").is_file()
    assert not (root / "plots" / "d-subgroups.png").exists() and "d subgroup gaps" not in shown
    assert "meta reliability: " in shown and "d reliability: " in shown
    assert (root / "plots" / "d-reliability.png").is_file()
