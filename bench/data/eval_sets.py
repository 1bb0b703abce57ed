"""Evaluation sets: test sets a run scores its model on besides its own test split, declared as data.

How a model holds up on corrupted images (MedMNIST-C) and on another dataset of the same task are questions
about the trained model, not about how it was trained. So they are declared beside the data (a dataset
entry's ``eval_sets``) or the sweep (a group's ``eval_sets``), scored after the one look at the test split,
saved beside the record (:mod:`bench.evaluation.eval_results`), and never part of a run's identity or key:
declaring one changes no key, so a committed record stays what it is.

Two ways to write one, in a sweep group or a dataset entry::

    eval_sets = ["corrupted", "external:isic"]      # shorthand: every MedMNIST-C corruption of the
                                                    # dataset's modality at severities 1-5; the isic entry
                                                    # with the label map the entries declare
    eval_sets = [
        { name = "corrupted-135", kind = "corrupted", severities = [1, 3, 5], corruptions = ["pixelate"] },
        { name = "isic-test", kind = "external", dataset = "isic", split = "test",
          label_map = { akiec = "malignant", bcc = "malignant", mel = "malignant", bkl = "benign",
                        df = "benign", nv = "benign", vasc = "benign" } },
    ]

A table's fields (:class:`EvalSetSpec`): ``name`` and ``kind`` (``corrupted`` | ``external``); for
``corrupted`` ``modality`` (``dermoscopy`` | ``chest_xray``, default the entry's), ``severities`` (1-5),
``corruptions`` (default all of the modality's) and ``reference`` (the backbone relative errors are
relative to, default ``resnet18``); for ``external`` ``dataset`` (a registered entry), ``label_map``
(default the one the two entries' ``[label_maps]`` declare) and ``split`` (``all`` images, or ``test``); for
either, ``on`` (the datasets whose runs score it: a group of several datasets declares each one's external set
once, ``on = ["ham10000"]``). A run scores the entry's sets and the group's, a group's set replacing the entry's
of the same name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from bench.config import FieldError, only_for
from bench.errors import ConfigError
from bench.paths import registry_files

Kind = Literal["corrupted", "external"]
Modality = Literal["dermoscopy", "chest_xray"]
KINDS: tuple[str, ...] = ("corrupted", "external")
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
"""MedMNIST-C's five severity levels."""
DEFAULT_REFERENCE = "resnet18"
"""The backbone whose row relative balanced errors divide by, unless a set names another (MedMNIST-C used AlexNet,
which is not registered here; ResNet-18 is the harness's common baseline)."""
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")
"""An eval set's name: a record key and a prefix of the saved scores' keys, so no ``/`` (their separator)."""
SHORTHAND = "give 'corrupted', 'external:<dataset>' or a table with name and kind (corrupted | external)"


@dataclass(frozen=True)
class EvalSetSpec:
    """One declared evaluation set (the module docstring has the fields); unset defaults are filled in."""

    name: str
    kind: Kind
    dataset: str | None = only_for("kind", "external")
    label_map: dict[str, str] | None = only_for("kind", "external", default=None)
    split: Literal["all", "test"] | None = only_for("kind", "external", default="all")
    modality: Modality | None = only_for("kind", "corrupted", default=None)
    severities: tuple[int, ...] | None = only_for("kind", "corrupted", default=SEVERITIES)
    corruptions: tuple[str, ...] | None = only_for("kind", "corrupted", default=None)
    reference: str | None = only_for("kind", "corrupted", default=DEFAULT_REFERENCE)
    on: tuple[str, ...] | None = None
    """The datasets whose runs score the set (None: every run it is declared for): one group, several datasets."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise FieldError("name", f"is {self.name!r}: letters, digits, '_', '.', ':' and '-' only (no '/')")
        if self.kind not in KINDS:
            raise FieldError("kind", f"is {self.kind!r}; expected one of {', '.join(map(repr, KINDS))}")
        if self.kind == "corrupted":
            _fill(self, severities=SEVERITIES, reference=DEFAULT_REFERENCE)
            if not self.severities or any(s not in SEVERITIES for s in self.severities):
                raise FieldError("severities", f"is {list(self.severities or [])}: give severities from 1 to 5")
            if len(set(self.severities)) != len(self.severities):
                raise FieldError("severities", f"is {list(self.severities)}: a severity twice")
            object.__setattr__(self, "severities", tuple(sorted(self.severities)))
            if self.corruptions is not None and not self.corruptions:
                raise FieldError("corruptions", "is empty: leave it out for every corruption of the modality")
        else:
            _fill(self, split="all")
            if not self.dataset:
                raise FieldError("dataset", "is missing: an external set names the registered dataset it scores on")
            if self.label_map is not None and not all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.label_map.items()
            ):
                raise FieldError("label_map", "must map class names to class names (strings)")

    def __hash__(self) -> int:  # label_map is a dict: hashed by its items (a RunSpec holding sets is hashed)
        items = None if self.label_map is None else tuple(sorted(self.label_map.items()))
        return hash((self.name, self.kind, self.dataset, items, self.split, self.modality, self.severities,
                     self.corruptions, self.reference, self.on))  # fmt: skip

    def to_dict(self) -> dict:
        """The set as a record's spec stores it: only the fields of its kind."""
        keep = ("name", "kind", "on") + (
            ("dataset", "label_map", "split") if self.kind == "external" else
            ("modality", "severities", "corruptions", "reference")
        )  # fmt: skip
        out = {k: getattr(self, k) for k in keep if getattr(self, k) is not None}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict) -> EvalSetSpec:
        """A set as :meth:`to_dict` wrote it."""
        lists = {k: tuple(v) for k in ("severities", "corruptions", "on") if isinstance(v := data.get(k), list)}
        return cls(**{**data, **lists})


def _fill(spec: EvalSetSpec, **defaults: object) -> None:
    """Defaults for fields left None (a set built in code rather than read by :func:`bench.config.from_mapping`)."""
    for name, value in defaults.items():
        if getattr(spec, name) is None:
            object.__setattr__(spec, name, value)


def parse_eval_set(value: str | EvalSetSpec, field: str = "eval_sets") -> EvalSetSpec:
    """A declared set: a table already read, or the shorthand ``corrupted`` / ``external:<dataset>``."""
    if isinstance(value, EvalSetSpec):
        return value
    if value == "corrupted":
        return EvalSetSpec(name="corrupted", kind="corrupted")
    kind, colon, dataset = value.partition(":")
    if kind == "external" and colon and dataset:
        return EvalSetSpec(name=value, kind="external", dataset=dataset)
    close = difflib.get_close_matches(value, ["corrupted", "external:"], n=1)
    hint = f"did you mean {close[0]!r}? " if close and close[0] != "external:" else ""
    raise FieldError(field, f"holds {value!r}, not an eval set; {hint}{SHORTHAND}")


def declared(values: Sequence[str | EvalSetSpec], field: str = "eval_sets") -> tuple[EvalSetSpec, ...]:
    """The sets a file declares, read and checked (a :class:`FieldError` naming ``field[i]``): known shorthand,
    each name once, every external dataset a registered entry. Checked where a file is read, not where a record
    is (a record stays readable on a machine whose registry lacks the dataset)."""
    sets = tuple(parse_eval_set(v, f"{field}[{i}]") for i, v in enumerate(values))
    known = registry_files("datasets")
    seen: set[str] = set()
    for i, spec in enumerate(sets):
        if spec.name in seen:
            raise FieldError(f"{field}[{i}]", f"names the eval set {spec.name!r} twice; give each set its own name")
        seen.add(spec.name)
        named = ([spec.dataset] if spec.kind == "external" else []) + list(spec.on or [])
        for dataset in named:
            if dataset not in known:  # an 'on' typo would quietly score the set on no run at all
                close = difflib.get_close_matches(str(dataset), list(known), n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
                raise FieldError(f"{field}[{i}]", f"names the dataset {dataset!r}, not a registered one ({hint})")
        if spec.on is not None and not spec.on:
            raise FieldError(f"{field}[{i}]", "has on = []: leave 'on' out to score the set on every run")
    return sets


def merge_eval_sets(
    entry_sets: Sequence[EvalSetSpec], run_sets: Sequence[EvalSetSpec], dataset: str | None = None
) -> tuple[EvalSetSpec, ...]:
    """The sets a run on ``dataset`` scores: its dataset entry's, then its group's (a group's set replaces the
    entry's of its name), those whose ``on`` leaves ``dataset`` out dropped."""
    merged = {s.name: s for s in entry_sets}
    merged.update({s.name: s for s in run_sets})
    return tuple(s for s in merged.values() if dataset is None or s.on is None or dataset in s.on)


def with_modality(spec: EvalSetSpec, modality: str | None, dataset: str) -> EvalSetSpec:
    """A corrupted set with its modality resolved (its own, else the run's dataset entry's); a ConfigError if none."""
    if spec.kind != "corrupted" or spec.modality is not None:
        return spec
    if modality is None:
        raise ConfigError(
            f"eval set {spec.name!r} on dataset {dataset!r}: no modality to pick MedMNIST-C corruptions by; set "
            "modality = 'dermoscopy' or 'chest_xray' in the eval set or the dataset entry"
        )
    return replace(spec, modality=modality)  # type: ignore[arg-type]
