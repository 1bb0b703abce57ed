"""bench.config: the one TOML validator every registry (backbones, datasets, protocols, sweeps) reads through.

A toy schema exercises each rule from_mapping enforces; tests/data/test_data.py and tests/models/test_registry.py
check the same rules through the real entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from bench.config import FieldError, from_mapping, load_toml, only_for
from bench.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    policy: Literal["a", "b"]
    seed: int | None = only_for("policy", "b", default=0)
    fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise FieldError("fraction", f"is {self.fraction}; must be between 0 and 1")


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner
    kind: Literal["plain", "fancy"] = "plain"
    fancy: Inner | None = only_for("kind", "fancy")
    items: tuple[Inner, ...] = ()
    tags: list[str] = field(default_factory=list)
    where: Path | None = None
    scale: float = 1.0
    origin: str = ""  # supplied by the caller, never by the file


BASE = {"name": "n", "inner": {"policy": "a"}}

PARSE_CASES = [
    ("defaults", BASE, Outer(name="n", inner=Inner("a"))),
    ("only_for default filled", {**BASE, "inner": {"policy": "b"}}, Outer(name="n", inner=Inner("b", seed=0))),
    ("only_for value kept", {**BASE, "inner": {"policy": "b", "seed": 3}}, Outer(name="n", inner=Inner("b", seed=3))),
    ("int read as float", {**BASE, "scale": 2}, Outer(name="n", inner=Inner("a"), scale=2.0)),
    (
        "conditional table",
        {**BASE, "kind": "fancy", "fancy": {"policy": "a"}},
        Outer(name="n", inner=Inner("a"), kind="fancy", fancy=Inner("a")),
    ),
    (
        "lists, tuples, paths",
        {**BASE, "items": [{"policy": "b"}], "tags": ["x"], "where": "d/e"},
        Outer(name="n", inner=Inner("a"), items=(Inner("b", seed=0),), tags=["x"], where=Path("d/e")),
    ),
]


@pytest.mark.parametrize("case, data, expected", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_parses(case, data, expected):
    parsed = from_mapping(Outer, data, "f.toml")
    assert parsed == expected and repr(parsed) == repr(expected)  # repr: 2.0 is not 2


ERROR_CASES = [
    ("typo", {**BASE, "nmae": "m"}, r"unknown field 'nmae' \(did you mean 'name'\?\)"),
    (
        "unknown nested",
        {**BASE, "inner": {"policy": "a", "zzz": 1}},
        r"unknown field 'inner\.zzz' \(known: fraction, policy, seed\)",
    ),
    ("caller's field", {**BASE, "origin": "x"}, r"unknown field 'origin'"),
    ("missing", {"inner": {"policy": "a"}}, r"field 'name' is missing$"),
    ("missing table", {"name": "n"}, r"field 'inner' is missing \(a table with at least 'policy'\)"),
    ("missing nested", {**BASE, "inner": {}}, r"field 'inner\.policy' is missing$"),
    ("wrong type", {**BASE, "name": 1}, r"field 'name' must be str, got 1$"),
    ("bool is no int", {**BASE, "inner": {"policy": "b", "seed": True}}, r"field 'inner\.seed' must be int, got True$"),
    ("not a table", {**BASE, "inner": "a"}, r"field 'inner' must be a table, got 'a'$"),
    ("not a list", {**BASE, "tags": "x"}, r"field 'tags' must be a list, got 'x'$"),
    ("list item", {**BASE, "tags": ["x", 3]}, r"field 'tags\[1\]' must be str, got 3$"),
    ("not a path", {**BASE, "where": 3}, r"field 'where' must be a path string, got 3$"),
    ("choice", {**BASE, "inner": {"policy": "c"}}, r"field 'inner\.policy' is 'c'; expected one of 'a', 'b'$"),
    (
        "only_for misplaced",
        {**BASE, "inner": {"policy": "a", "seed": 1}},
        r"field 'inner\.seed' is only for policy 'b', not 'a'$",
    ),
    (
        "only_for on a default",
        {**BASE, "fancy": {"policy": "a"}},
        r"field 'fancy' is only for kind 'fancy', not 'plain'$",
    ),
    (
        "only_for required",
        {**BASE, "kind": "fancy"},
        r"field 'fancy' is missing \(kind 'fancy' needs a table with at least 'policy'\)$",
    ),
    (
        "FieldError",
        {**BASE, "inner": {"policy": "a", "fraction": 2}},
        r"field 'inner\.fraction' is 2\.0; must be between 0 and 1$",
    ),
    (
        "FieldError in a list",
        {**BASE, "items": [{"policy": "a"}, {"policy": "a", "fraction": 0}]},
        r"field 'items\[1\]\.fraction' is 0\.0",
    ),
]


@pytest.mark.parametrize("case, data, match", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_errors_name_file_and_dotted_field(case, data, match):
    with pytest.raises(ConfigError, match=match) as caught:
        from_mapping(Outer, data, "f.toml", origin="caller")
    assert str(caught.value).startswith("f.toml: ") and "\n" not in str(caught.value)


def test_given_fields_come_from_the_caller():
    assert from_mapping(Outer, BASE, "f.toml", origin="caller").origin == "caller"


LOAD_CASES = [
    ("syntax", b'a = 1\nb = "open\n', r"f\.toml: invalid TOML: .*line 2"),
    ("encoding", b'a = "\xff"\n', r"f\.toml: cannot read: not UTF-8 \(invalid start byte at byte 5\)"),
    ("absent", None, r"f\.toml: cannot read: No such file"),
]


@pytest.mark.parametrize("case, content, match", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_load_toml_errors(tmp_path, case, content, match):
    path = tmp_path / "f.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=match):
        load_toml(path)
