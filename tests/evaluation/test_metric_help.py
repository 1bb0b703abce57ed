"""A metric's description is what the user reads when choosing one: ``bench leaderboard --help`` lists each sort
metric with the meaning the table declares (balanced accuracy's ISIC definition, NaN for an absent class)."""

from __future__ import annotations

from console import run_bench

from bench.evaluation.metrics import HEADLINE_METRICS, get_metric


def test_leaderboard_help_explains_every_sort_metric(monkeypatch, capsys) -> None:
    out = run_bench(monkeypatch, capsys, "leaderboard", "--help")
    assert out.status == 0, out.stderr
    shown = "".join(out.stdout.split())  # the help wraps at spaces and hyphens (one-vs-rest): compare without them
    for name in HEADLINE_METRICS:
        assert "".join(f"{name}: {get_metric(name).description}.".split()) in shown, name
