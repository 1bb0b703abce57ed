"""A protocol's [search]: read and checked like every other field, a design that is the same for every backbone."""

from __future__ import annotations

import math

import pytest

from bench.errors import ConfigError
from bench.protocol.search import Range, Search
from bench.protocol.spec import get_protocol, read_protocol
from bench.runs.identity import canonical

BASE = """name = "searched"
pretrained = false
[[phases]]
name = "head"
epochs = 2
lr = 1e-3
trainable = 0.0
[[phases]]
name = "full"
epochs = 4
lr = 1e-4
trainable = 1.0
"""


def _write(tmp_path, search: str):
    path = tmp_path / "searched.toml"
    path.write_text(BASE + "[search]\n" + search)
    return path


def test_a_search_table_is_read_into_typed_ranges(tmp_path):
    protocol = read_protocol(_write(tmp_path, "trials = 5\nepochs = 3\nlr = { low = 1e-4, high = 1e-2 }\n"))
    assert protocol.search == Search(trials=5, epochs=3, lr=Range(1e-4, 1e-2))
    assert list(protocol.search.space) == ["lr"]


BAD = [
    ("trials = 0\nlr = { low = 1e-4, high = 1e-2 }\n", "search.trials"),
    ("trials = 4\n", "search.lr"),  # nothing to search
    ("trials = 4\nlr = { low = 1e-2, high = 1e-4 }\n", "search.lr.low"),
    ("trials = 4\nlr = { low = 0.0, high = 1e-4 }\n", "search.lr.low"),
    ("trials = 4\nlrate = { low = 1e-4, high = 1e-2 }\n", "unknown field 'search.lrate'"),
    ('trials = 4\npruner = "asha"\nlr = { low = 1e-4, high = 1e-2 }\n', "search.pruner"),
    ("trials = 4\nwarmup_epochs = []\n", "search.warmup_epochs"),
    ("trials = 4\ndrop_rate = { low = 0.0, high = 1.0, log = false }\n", "search.drop_rate"),
]


@pytest.mark.parametrize(("table", "named"), BAD)
def test_a_bad_search_table_names_the_file_and_field(tmp_path, table, named):
    with pytest.raises(ConfigError) as err:
        read_protocol(_write(tmp_path, table))
    assert "searched.toml" in str(err.value) and named in str(err.value)


def test_the_design_is_a_latin_hypercube_drawn_with_the_seed():
    """Every backbone tries the same settings (the same seed gives the same design), and each of the ``trials``
    equal strata of a log range holds exactly one trial."""
    search = Search(trials=6, lr=Range(1e-4, 1e-2), weight_decay=Range(1e-6, 1e-2), warmup_epochs=(0, 1, 2))
    design = search.design()
    assert design == search.design() and design != Search(**{**vars(search), "seed": 1}).design()
    assert len(design) == 6
    for name, dim in (("lr", search.lr), ("weight_decay", search.weight_decay)):
        strata = sorted(int(6 * math.log(p[name] / dim.low) / math.log(dim.high / dim.low)) for p in design)
        assert strata == list(range(6)), (name, strata)
    assert {p["warmup_epochs"] for p in design} == {0, 1, 2}


def test_tuning_the_learning_rate_keeps_the_phases_ratio():
    protocol = get_protocol("staged")
    ratio = protocol.phases[1].lr / protocol.phases[0].lr
    out = protocol.tuned({"lr": 3e-3, "weight_decay": 1e-4, "warmup_epochs": 1})
    assert out.phases[0].lr == pytest.approx(3e-3)
    assert out.phases[1].lr / out.phases[0].lr == pytest.approx(ratio)
    assert (out.weight_decay, out.warmup_epochs) == (1e-4, 1)


def test_the_space_and_budget_are_in_the_identity_and_a_protocol_without_one_is_unchanged(tmp_path):
    """The search is part of the experiment: another space is another row; the fields added for it leave every
    protocol without a search exactly as its identity always was."""
    plain = get_protocol("scratch")
    assert "search" not in canonical(plain)
    searched = read_protocol(_write(tmp_path, "trials = 5\nlr = { low = 1e-4, high = 1e-2 }\n"))
    other = read_protocol(_write(tmp_path, "trials = 5\nlr = { low = 1e-4, high = 3e-2 }\n"))
    assert canonical(searched)["search"] == {"trials": 5, "lr": {"low": 1e-4, "high": 1e-2}}
    assert canonical(searched) != canonical(other)
