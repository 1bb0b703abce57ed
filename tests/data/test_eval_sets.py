"""Evaluation sets as data: the shorthand and the table read into one typed set, and every bad declaration is one
line naming the file and the field (exit 2 on the command line)."""

from __future__ import annotations

from pathlib import Path

import pytest
from console import run_bench

from bench.data.entries import parse_entry
from bench.data.eval_sets import SEVERITIES, EvalSetSpec, merge_eval_sets, parse_eval_set, with_modality
from bench.errors import ConfigError
from bench.runs.spec import RunSpec
from bench.runs.sweep import load_sweep

GROUP = '[[group]]\nbackbones = ["test_resnet"]\ndatasets = ["tiny"]\n'


def sweep_file(tmp_path: Path, eval_sets: str) -> Path:
    path = tmp_path / "evs.toml"
    path.write_text(f'name = "evs"\n{GROUP}eval_sets = {eval_sets}\n')
    return path


def test_shorthand_and_table_read_the_same(project, tmp_path):
    sweep = load_sweep(sweep_file(tmp_path, '["corrupted", "external:isic", { name = "c", kind = "corrupted" }]'))
    corrupted, external, table = sweep.group[0].eval_sets
    assert corrupted == EvalSetSpec(name="corrupted", kind="corrupted") and corrupted.severities == SEVERITIES
    assert corrupted.reference == "resnet18" and corrupted.modality is None
    assert external == EvalSetSpec(name="external:isic", kind="external", dataset="isic", split="all")
    assert table.severities == corrupted.severities and table.corruptions is None
    (spec,) = sweep.expand()
    assert spec.eval_sets == sweep.group[0].eval_sets


def test_a_spec_with_eval_sets_round_trips_through_its_record_form():
    sets = (
        EvalSetSpec(name="c", kind="corrupted", severities=(1, 3), corruptions=("pixelate",)),
        EvalSetSpec(name="e", kind="external", dataset="isic", label_map={"a": "b"}),
    )
    spec = RunSpec("test_resnet", "tiny", "scratch", eval_sets=sets)
    stored = spec.to_dict()
    assert stored["eval_sets"][0] == {
        "name": "c", "kind": "corrupted", "severities": [1, 3], "corruptions": ["pixelate"], "reference": "resnet18"
    }  # fmt: skip
    assert RunSpec.from_dict(stored) == spec and hash(RunSpec.from_dict(stored)) == hash(spec)
    assert "eval_sets" not in RunSpec("test_resnet", "tiny", "scratch").to_dict()  # old records read the same


BAD = [
    ('["corupted"]', "field 'group[0].eval_sets[0]' holds 'corupted', not an eval set; did you mean 'corrupted'?"),
    ('["external"]', "field 'group[0].eval_sets[0]' holds 'external', not an eval set"),
    ('["external:isci"]', "names the dataset 'isci', not a registered one (did you mean 'isic'?)"),
    ('[{ name = "x", kind = "blur" }]', "field 'group[0].eval_sets[0].kind' is 'blur'; expected one of"),
    ('[{ name = "x", kind = "external" }]', "field 'group[0].eval_sets[0].dataset' is missing"),
    ('[{ name = "x", kind = "corrupted", severities = [0, 6] }]', "field 'group[0].eval_sets[0].severities' is [0, 6]"),
    ('[{ name = "x", kind = "corrupted", dataset = "isic" }]', "'group[0].eval_sets[0].dataset' is only for kind"),
    ('[{ name = "a/b", kind = "corrupted" }]', "field 'group[0].eval_sets[0].name' is 'a/b'"),
    ('["corrupted", "corrupted"]', "field 'group[0].eval_sets[1]' names the eval set 'corrupted' twice"),
    ('[{ name = "x", kind = "corrupted", modality = "mri" }]', "'group[0].eval_sets[0].modality' is 'mri'"),
    ('[{ name = "x", kind = "corrupted", on = ["ham1000"] }]', "names the dataset 'ham1000', not a registered one"),
    ('[{ name = "x", kind = "corrupted", on = [] }]', "field 'group[0].eval_sets[0]' has on = []"),
]


@pytest.mark.parametrize(("declared", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_declaration_in_a_sweep_names_the_file_and_field(project, tmp_path, declared, message):
    path = sweep_file(tmp_path, declared)
    with pytest.raises(ConfigError) as err:
        load_sweep(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_bad_declaration_in_a_dataset_entry_names_the_file_and_field(project):
    entry = project / "datasets" / "tiny.toml"
    entry.write_text(entry.read_text().replace("[split]", 'eval_sets = ["corupted"]\n[split]'))
    with pytest.raises(ConfigError, match=r"tiny\.toml: field 'eval_sets\[0\]' holds 'corupted'"):
        parse_entry(entry)


def test_the_cli_refuses_a_bad_declaration_in_one_line_with_exit_2(project, tmp_path, monkeypatch, capsys):
    path = sweep_file(tmp_path, '[{ name = "x", kind = "blur" }]')
    out = run_bench(monkeypatch, capsys, "run", "--sweep", str(path), "--device", "cpu", "--dry-run")
    assert out.status == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "eval_sets[0].kind' is 'blur'" in lines[0], out.stderr


def test_a_groups_set_replaces_the_entrys_of_its_name_and_modality_comes_from_the_entry():
    entry_sets = (parse_eval_set("corrupted"), parse_eval_set("external:isic"))
    mine = EvalSetSpec(name="corrupted", kind="corrupted", severities=(5,))
    merged = merge_eval_sets(entry_sets, (mine,))
    assert [s.name for s in merged] == ["corrupted", "external:isic"] and merged[0].severities == (5,)
    assert with_modality(merged[0], "dermoscopy", "ham10000").modality == "dermoscopy"
    with pytest.raises(ConfigError, match="eval set 'corrupted' on dataset 'tiny': no modality"):
        with_modality(merged[0], None, "tiny")


def test_on_scores_a_set_only_on_the_runs_of_its_datasets(project, tmp_path):
    """One group of several datasets declares each one's external set once (the mission sweeps' shape)."""
    declared = (
        '["corrupted", { name = "external:isic", kind = "external", dataset = "isic", on = ["ham10000"] },'
        ' { name = "external:ham10000", kind = "external", dataset = "ham10000", on = ["isic"] }]'
    )
    sets = load_sweep(sweep_file(tmp_path, declared)).group[0].eval_sets
    assert [s.name for s in merge_eval_sets((), sets, "ham10000")] == ["corrupted", "external:isic"]
    assert [s.name for s in merge_eval_sets((), sets, "isic")] == ["corrupted", "external:ham10000"]
    assert [s.name for s in merge_eval_sets((), sets, "chest_xray")] == ["corrupted"]
    assert EvalSetSpec.from_dict(sets[1].to_dict()) == sets[1] and sets[1].to_dict()["on"] == ["ham10000"]
