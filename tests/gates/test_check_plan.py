"""`bench check` reruns the reference sweep as every sweep runs: checked whole by ``plan_sweep`` first, so an
impossible precision or an unwritable folder is one line before anything trains, not a failed rerun."""

from __future__ import annotations

import pytest
import torch
from console import run_bench

from bench.errors import ResultsError
from bench.gates.rerun import rerun_reference
from bench.runs.record import save_record

SWEEP = 'name = "ci"\n[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["tiny"]\nseeds = [0]\nepochs = 1\n'


@pytest.fixture
def keep_threads():
    """The rerun sets torch's thread count to the reference's: give the next test back what it had."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_a_precision_the_device_cannot_run_is_one_line_before_the_rerun(
    project, tmp_path, monkeypatch, capsys, make_record, keep_threads
):
    (tmp_path / "s.toml").write_text(SWEEP + 'precision = "fp16"\n')
    save_record(make_record(), tmp_path / "ref")
    out = run_bench(monkeypatch, capsys, "check", "--sweep", "s.toml", "--reference", "ref", columns=200)
    text = out.stdout + out.stderr
    assert out.status == 2 and len(text.strip().splitlines()) == 1, text
    assert "fp16 needs a CUDA device" in text and "rerunning" not in text


def test_an_unwritable_rerun_folder_is_refused_before_the_rerun(project, tmp_path, make_record, keep_threads):
    (tmp_path / "s.toml").write_text(SWEEP)
    (tmp_path / "a-file").write_text("")
    watched = []

    def watch(plan):
        watched.append(plan)
        raise AssertionError("the rerun was about to start")

    with pytest.raises(ResultsError, match="cannot write there"):
        rerun_reference("s.toml", tmp_path / "a-file" / "rerun", [make_record()], "cpu", watch)
    assert watched == []
