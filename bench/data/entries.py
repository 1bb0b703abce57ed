"""The dataset registry: one TOML file ``datasets/<name>.toml`` per dataset, read into a typed entry.

Adding data needs no code. The split seed lives in the entry, not in the run, so every backbone and every
training seed of a comparison sees the same test images (paired tests need that). How the entry's split
policy is carried out is :mod:`bench.data.splits`; decoding and caching is :mod:`bench.data.loading`.

Entry schema, read into :class:`DatasetEntry` by :func:`bench.config.from_mapping` like every registry file
(unknown keys are errors, so typos do not pass silently)::

    name = "mydata"                  # required, equals the file name
    title = "..."                    # required, one line for `bench list datasets`
    layout = "class_folders"         # required: npz | class_folders | metadata_csv
    path = "data/mydata"             # required: relative to the project root, or absolute (npz: the file)
    classes = ["benign", "malignant"]  # required, ordered: index = label; binary => classes[1] positive
    task = "binary"                  # required: binary (2 classes) | multiclass (3 or more)
    positive = "malignant"           # binary only: the clinically positive class      default classes[1]
    color = "rgb"                    # rgb | grayscale (1 channel; X-rays)            default rgb
    resize = "bilinear"              # PIL filter: nearest|box|bilinear|hamming|bicubic|lanczos (antialiased)
    crop = "none"                    # none (squash to square) | center (crop short edge first)
    licence = "..."                  # required
    citation = "..."                 # required
    shares_source_with = "..."       # which other entries come from the same images/patients

    [split]
    policy = "stratified"            # official | carve_val | stratified
    train = 0.7                      # stratified only: train/val/test fractions (sum 1)
    val = 0.1                        # carve_val: fraction of the published train moved to val
    test = 0.2
    seed = 0                         # carve_val / stratified

    [metadata_csv]                   # layout metadata_csv only
    file = "meta.csv"                # one row per image
    image_dir = "images"             # image = <image_dir>/<id><image_suffix>
    image_suffix = ".jpg"
    id_column = "image_id"
    label_column = "dx"
    group_column = "lesion_id"       # optional: splits keep groups whole; audit counts groups across splits
    split_file = "split.csv"         # optional, official/carve_val: columns split, <id_column> [, index]

    [subgroups]                      # optional: per-image metadata to score subgroups by (bench.data.subgroups)
    metadata = "meta.csv"            # relative to path; one row per image
    id_column = "image_id"           # the ids runs save with their test scores
    columns = {sex = "sex", age = "age", site = "localization"}   # attribute = metadata column
    bands = {age = [30, 45, 60, 75]}  # optional: numeric attributes cut into bands (<30, 30-44, ..., 75+)

    # Evaluation sets (bench.data.eval_sets); descriptive like subgroups: none of these is in a run's identity.
    modality = "dermoscopy"          # dermoscopy | chest_xray: which MedMNIST-C corruptions fit its images
    same_source = ["other"]          # entries of the same images: never an external test set for each other
    eval_sets = ["corrupted", "external:isic"]   # sets every run on this dataset also scores   default none

    [label_maps.isic]                # this dataset's classes onto another entry's, for external eval sets
    mel = "malignant"                # fine class = coarse class

Layouts: ``npz`` holds MedMNIST keys ``{train,val,test}_{images,labels}``; ``class_folders`` is
``<path>/<class>/*`` (no published split) or ``<path>/{train,test[,val]}/<class>/*``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from bench.config import FieldError, check_identifier, from_mapping, load_toml, only_for, split_fractions
from bench.data._layouts import Crop, MetadataOptions, Resize
from bench.data.eval_sets import EvalSetSpec, Modality, declared
from bench.data.subgroups import SubgroupOptions
from bench.errors import ConfigError
from bench.paths import registry_files

Layout = Literal["npz", "class_folders", "metadata_csv"]
Task = Literal["binary", "multiclass"]
Color = Literal["rgb", "grayscale"]
Policy = Literal["official", "carve_val", "stratified"]


@dataclass(frozen=True)
class SplitSpec:
    """How train/val/test are formed.

    * ``official``: the split the data ships with (npz keys, ``train|val|test`` folders, a split file).
    * ``carve_val``: published train/test kept; validation carved from train (a published val is
      merged into train first, as PneumoniaMNIST did with Kermany's 16-image val folder).
    * ``stratified``: everything pooled and split train/val/test by class.

    Carving and stratified splits are grouped (no group in two splits) when the layout has groups. A
    setting is None under a policy that does not use it; where it is used, reading the ``[split]`` table
    (:func:`bench.config.from_mapping`) fills in the default the file leaves out.
    """

    policy: Policy
    seed: int | None = only_for("policy", "carve_val", "stratified", default=0)
    train: float | None = only_for("policy", "stratified", default=0.7)
    val: float | None = only_for("policy", "carve_val", "stratified", default=0.1)
    test: float | None = only_for("policy", "stratified", default=0.2)

    def __post_init__(self) -> None:
        if self.seed is not None and self.seed < 0:
            raise FieldError("seed", f"is {self.seed}; a seed must be 0 or more")
        for name in ("train", "val", "test"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise FieldError(name, f"is {value}; a fraction must be between 0 and 1")
        if self.policy == "stratified" and abs(self.train + self.val + self.test - 1.0) > 1e-6:
            raise FieldError("train", "+ val + test must sum to 1")

    def describe(self) -> str:
        """The policy in words, as records and inferred entries state it."""
        if self.policy == "official":
            return "train/val/test as given"
        seed = f"split seed {self.seed}, the same for every training seed"
        if self.policy == "carve_val":
            return f"train/test as given, val a stratified {self.val:.0%} of train ({seed})"
        return f"stratified {self.train:.0%}/{self.val:.0%}/{self.test:.0%} of all images ({seed})"


@dataclass(frozen=True, kw_only=True)
class DatasetEntry:
    """One ``datasets/*.toml`` file, validated (schema: this module's docstring). ``path`` is absolute."""

    name: str
    title: str
    layout: Layout
    path: Path
    classes: tuple[str, ...]
    task: Task
    positive: str | None = only_for("task", "binary", default=None)  # None: classes[1]
    color: Color = "rgb"
    resize: Resize = "bilinear"
    crop: Crop = "none"
    split: SplitSpec
    licence: str
    citation: str
    shares_source_with: str = ""
    metadata_csv: MetadataOptions | None = only_for("layout", "metadata_csv")
    subgroups: SubgroupOptions | None = None  # descriptive: not in a run's identity
    # Evaluation sets (bench.data.eval_sets): what a trained model is also scored on, so descriptive too.
    modality: Modality | None = None
    same_source: tuple[str, ...] = ()
    label_maps: dict[str, dict[str, str]] = field(default_factory=dict, hash=False)
    eval_sets: tuple[EvalSetSpec | str, ...] = ()
    source_file: Path

    def __post_init__(self) -> None:
        if self.name != self.source_file.stem:
            raise FieldError("name", f"is '{self.name}' but must equal the file name '{self.source_file.stem}'")
        _check_classes(self.classes, self.task)
        if self.positive is not None and self.positive not in self.classes:
            raise FieldError("positive", f"is '{self.positive}', not one of the classes {list(self.classes)}")
        _check_split_file(self.metadata_csv, self.split.policy)
        _check_label_maps(self.label_maps, self.classes)
        object.__setattr__(self, "eval_sets", declared(self.eval_sets))

    @property
    def grayscale(self) -> bool:
        return self.color == "grayscale"

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _check_classes(classes: tuple[str, ...], task: str) -> None:
    if not classes or not all(classes):
        raise FieldError("classes", "must be a non-empty list of class names")
    if len(set(classes)) != len(classes):
        raise FieldError("classes", "has duplicate names")
    if task == "binary" and len(classes) != 2:
        raise FieldError("classes", f"must have 2 names for task 'binary' (classes[1] is positive), not {len(classes)}")
    if task == "multiclass" and len(classes) < 3:
        raise FieldError("classes", "must have at least 3 names for task 'multiclass'; use task = 'binary' for 2")


def _check_label_maps(maps: dict, classes: tuple[str, ...]) -> None:
    """Each ``[label_maps.<entry>]`` maps this entry's classes (or another's onto these) by name, as strings."""
    for other, mapping in maps.items():
        if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
            raise FieldError(f"label_maps.{other}", "must be a table of class = class (strings)")
        if not (set(mapping) <= set(classes) or set(mapping.values()) <= set(classes)):
            raise FieldError(f"label_maps.{other}", f"maps {sorted(mapping)}: neither side is among {list(classes)}")


def _check_split_file(metadata: MetadataOptions | None, policy: str) -> None:
    """A published split file is what the official and carve_val policies start from; stratified ignores one."""
    if metadata is None:
        return
    has_split_file = metadata.split_file is not None
    if has_split_file == (policy == "stratified"):
        need = "does not use" if has_split_file else "needs"
        raise FieldError(
            "metadata_csv.split_file", f"is {'set' if has_split_file else 'missing'}: policy '{policy}' {need} it"
        )


def list_datasets() -> list[DatasetEntry]:
    """Every entry in ``datasets/`` (shipped and ``BENCH_HOME``'s), sorted by name; a malformed file raises
    ConfigError naming it."""
    return [parse_entry(file) for file in registry_files("datasets").values()]


def registered_names() -> list[str]:
    """The names of the entries in ``datasets/``, sorted (without reading them)."""
    return sorted(registry_files("datasets"))


def get_dataset_entry(name: str) -> DatasetEntry:
    """The entry ``datasets/<name>.toml``; an unknown name suggests the closest known ones."""
    check_identifier(name, "dataset name")  # a path such as ../x would read a file outside datasets/
    files = registry_files("datasets")
    if name in files:
        return parse_entry(files[name])
    close = difflib.get_close_matches(name, list(files), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    folder = f"; for the folder {name}/ pass ./{name}" if Path(name).is_dir() else ""
    raise ConfigError(f"unknown dataset '{name}'; {hint}(known: {', '.join(files) or 'none'}){folder}")


def parse_entry(file: Path) -> DatasetEntry:
    """Read and validate one dataset TOML; every mistake is a ConfigError naming file and field.

    A relative ``path`` is under the folder that holds the entry's ``datasets/`` (the repository's ``data/``
    for a shipped entry, ``BENCH_HOME``'s for the user's own).
    """
    entry = from_mapping(DatasetEntry, load_toml(file), str(file), source_file=file)
    path = entry.path.expanduser()
    return replace(entry, path=path if path.is_absolute() else file.resolve().parent.parent / path)


def with_split(entry: DatasetEntry, split: str) -> DatasetEntry:
    """``entry`` under a protocol's ``split``: itself for ``"dataset"``, else a stratified split at those percentages.

    ``"70/20/10"`` pools every labelled image (a published split and a split file are set aside) and splits
    it train/val/test by class, grouped when the data has groups, with the entry's split seed. The entry's
    content, and so the run's identity, says which split a run saw.
    """
    if split == "dataset":
        return entry
    train, val, test = split_fractions(split)
    seed = entry.split.seed if entry.split.seed is not None else 0
    metadata = replace(entry.metadata_csv, split_file=None) if entry.metadata_csv else None
    spec = SplitSpec("stratified", seed=seed, train=train, val=val, test=test)
    return replace(entry, split=spec, metadata_csv=metadata)
