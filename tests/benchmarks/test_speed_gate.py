"""The speed gate divides by the machine's speed: a slower machine passes, a slower harness fails."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks import speed_gate


def _write(path, figures: dict[str, tuple[float, float | None]]):
    benchmarks = []
    for name, (min_s, reference) in figures.items():
        extra = {} if reference is None else {"reference_s": reference}
        benchmarks.append({"fullname": f"tests/benchmarks/x.py::{name}", "stats": {"min": min_s}, "extra_info": extra})
    path.write_text(json.dumps({"benchmarks": benchmarks}))
    return path


BASE = {"step": (0.100, 0.020), "pipeline": (0.0005, 0.020)}

# (case, now, exit status, words the output must hold)
CASES = [
    ("same", {"step": (0.100, 0.020), "pipeline": (0.0005, 0.020)}, 0, ["1.00"]),
    ("machine 1.7x slower, all alike", {"step": (0.170, 0.034), "pipeline": (0.00085, 0.034)}, 0, ["1.70"]),
    ("harness 1.8x slower, same machine", {"step": (0.180, 0.020), "pipeline": (0.0005, 0.020)}, 1, ["over the limit"]),
    ("harness 2x slower on a machine 2x faster", {"step": (0.100, 0.010), "pipeline": (0.00025, 0.010)}, 1, ["2.00"]),
    ("a benchmark stopped running", {"step": (0.100, 0.020)}, 1, ["did not run", "pipeline"]),
]


@pytest.mark.parametrize("case, now, status, words", CASES, ids=[c[0] for c in CASES])
def test_gate(tmp_path, capsys, case, now, status, words):
    base = _write(tmp_path / "base.json", BASE)
    current = _write(tmp_path / "now.json", now)
    assert speed_gate.main([str(base), str(current)]) == status
    out = capsys.readouterr().out
    for word in words:
        assert word in out


def test_normalised_ratio():
    row = speed_gate.Comparison("x", speed_gate.Figure(0.1, 0.02), speed_gate.Figure(0.3, 0.03))
    assert (row.raw, row.machine) == (pytest.approx(3.0), pytest.approx(1.5))
    assert row.normalised == pytest.approx(2.0)


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no such file"),
        ("not json", "not pytest-benchmark JSON"),
        (json.dumps({"benchmarks": [{"fullname": "a::b", "stats": {"min": 1.0}}]}), "no extra_info.reference_s"),
    ],
    ids=["missing", "not json", "old baseline"],
)
def test_unreadable_file_is_one_line_exit_2(tmp_path, capsys, content, words):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    good = _write(tmp_path / "now.json", BASE)
    assert speed_gate.main([str(bad), str(good)]) == 2
    err = capsys.readouterr().err
    assert words in err and str(bad) in err and len(err.strip().splitlines()) == 1
