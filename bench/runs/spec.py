"""What a run is: its :class:`RunSpec`, its *experiment identity*, and its run key.

A leaderboard row, a CI, a tie test, a plot point, a paired comparison and a gate's pairing all need one
answer to "are these two runs the same experiment?". :func:`experiment_identity` is that answer: the
fully resolved config of a run minus its seed. Two runs with equal identities differ only by seed (and by
the machine and library versions that ran them), so they are seeds of one experiment; anything else that
differs (epochs, a phase's lr, weights, precision, the data) makes another experiment and another row.

The run key (:func:`run_key`) hashes the identity, the seed and the versions that change numbers
(backbone-bench, torch, timm): a finished record under that key is the run, and anything that changes the
key, the data included, is a new run rather than a skip.

**One rule keeps identities stable as configs grow** (:func:`canonical`): every field of the config
dataclasses that existed at record schema 2 (:data:`SCHEMA2_FIELDS`) always enters the identity; a field
added later enters only while its value differs from its declared default. So a new protocol or dataset
field whose default reproduces the old behaviour leaves every existing identity and key as it was, and
its first non-default use is a new experiment. Descriptive fields (titles, licences, where files are) never
enter (:data:`DESCRIPTIVE_FIELDS`): they do not change a number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import FieldError, check_identifier, check_seeds, check_train_fractions
from bench.data.eval_sets import EvalSetSpec
from bench.errors import ConfigError, WeightsError
from bench.files import checkpoint_format, file_sha256, not_a_checkpoint
from bench.precision import MEMORY_FORMATS, PRECISIONS, AmpDtype, MemoryFormat, Precision

if TYPE_CHECKING:
    from bench.data.identity import DataIdentity


KEY_VERSIONS = ("backbone-bench", "torch", "timm")
"""Versions in the run key: another harness, torch or timm is another run (numbers may move), same experiment."""

SCHEMA2_FIELDS: dict[str, frozenset[str]] = {
    "BackboneEntry": frozenset({"name", "timm_name", "min_input_size", "small_input_stem"}),
    "Protocol": frozenset(
        {
            "name", "pretrained", "phases", "optimizer", "weight_decay", "batch_size", "schedule", "milestones",
            "gamma", "early_stopping_patience", "select_on", "class_weighted_loss", "augment",
        }
    ),
    "Phase": frozenset({"name", "epochs", "lr", "trainable", "freeze_bn"}),
    "Augment": frozenset({"rotation", "hflip", "vflip", "zoom"}),
    "DatasetEntry": frozenset(
        {"name", "layout", "classes", "task", "color", "resize", "crop", "split", "metadata_csv"}
    ),
    "SplitSpec": frozenset({"policy", "seed", "train", "val", "test"}),
    "MetadataOptions": frozenset(
        {"file", "image_dir", "id_column", "label_column", "image_suffix", "group_column", "split_file"}
    ),
}  # fmt: skip
"""The fields, per config dataclass, that existed at record schema 2: they always enter an identity."""

DESCRIPTIVE_FIELDS: dict[str, frozenset[str]] = {
    "BackboneEntry": frozenset({"title", "family", "registered"}),
    "DatasetEntry": frozenset(
        {
            "title",
            "licence",
            "citation",
            "shares_source_with",
            "path",
            "source_file",
            "subgroups",
            "modality",
            "same_source",
            "label_maps",
            "eval_sets",  # what a trained model is also scored on
        }
    ),
}
"""Fields that describe or locate but never change a number (the data's content enters by its fingerprint)."""


@dataclass(frozen=True)
class RunSpec:
    """What to run: a backbone on a dataset under a protocol, with one seed.

    ``precision`` is what the user asked of the engine (:func:`bench.train.engine.engine_for`): ``auto`` picks by
    device, the others are kept to or refused. On a CPU, planning measures which precision and ``memory_format``
    train this backbone fastest (:mod:`bench.runs.engines`) and writes what differs from the CPU's standing
    fp32 NCHW into the spec: ``auto_precision = "bf16"`` (it changes the numbers, so it enters the identity in
    place of ``auto``: :func:`identity_precision`) and ``memory_format = "nhwc"`` (speed only: not in the
    identity), so every worker runs what the driver planned and keyed. ``data_root`` says where the data is, not
    what it is: the data enters the identity by its fingerprint and pixels. ``keep_weights`` says whether the
    selected model is kept beside the record; like ``data_root`` it changes no number, so it is in neither the
    identity nor the key. A ``weights_file`` of the form ``run:<dataset>/<backbone>/<protocol>[/s<seed>]`` names
    another run as the source of the initial weights; planning resolves it (:func:`bench.runs.source.resolve_sources`)
    and sets ``source_experiment`` and ``source_key``, so identity and key follow from the spec alone, on any worker.
    ``allow_overlap`` lets such a run train although the leakage check (:mod:`bench.data.leakage`) found images
    of its val/test split in the source's training split; the overlap count is recorded either way. ``eval_sets``
    are what the trained model is also scored on (:mod:`bench.data.eval_sets`, the dataset entry's joining them
    when it runs): they change nothing trained, so they are in neither the identity nor the key. Nor is
    ``search_storage``, the database of a protocol's search study (default: an SQLite file in the results folder):
    where the search is kept, not what it tries. ``train_fraction`` trains on that stratified, nested share of the
    training split (:mod:`bench.data.fractions`; validation and test are whole): it changes what is learnt, so it
    enters the identity and the key, but only when not 1.0, so every run made before it existed keeps its key.
    """

    backbone: str
    dataset: str
    protocol: str
    seed: int = 0
    resolution: int = 28
    epochs: int | tuple[int, ...] | None = None  # overrides the protocol's per-phase epochs
    resolution_policy: str = "upsize"
    data_root: str | None = None
    weights_file: str | None = None
    precision: Precision = "auto"
    keep_weights: bool = True
    source_experiment: str | None = None  # the experiment id a ``weights = "run:..."`` source resolved to
    source_key: str | None = None  # and the run key (bench.runs.source.resolve_sources)
    allow_overlap: bool = False  # train even where the leakage check finds target images in the source's training
    memory_format: MemoryFormat = "auto"  # nchw or nhwc (channels_last); not in the identity or key
    auto_precision: AmpDtype | None = None  # what planning measured ``auto`` fastest as on a CPU, when not fp32
    eval_sets: tuple[EvalSetSpec, ...] = ()  # scored after training (bench.data.eval_sets); not in the identity or key
    search_storage: str | None = None  # where a protocol's search keeps its study (bench.runs.search); not in the key
    train_fraction: float = 1.0  # the share of the training split trained on (bench.data.fractions); keyed when < 1

    def __post_init__(self) -> None:
        # Names become folders and file names under the results folder: never a path that leaves it.
        check_identifier(self.backbone, "backbone name")
        check_identifier(self.dataset, "dataset name")
        check_identifier(Path(self.protocol).stem, "protocol name", self.protocol)
        check_seeds([self.seed], "seed")
        try:
            check_train_fractions([self.train_fraction], "train_fraction")
        except FieldError as err:
            raise ConfigError(f"train_fraction {err.problem.removeprefix('holds ')}") from None
        object.__setattr__(self, "train_fraction", float(self.train_fraction))  # 1 from a file is 1.0: one key
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"memory format {self.memory_format!r} is not one of {', '.join(MEMORY_FORMATS)}")
        if self.auto_precision is not None and (self.precision != "auto" or self.auto_precision != "bf16"):
            raise ConfigError(
                f"auto_precision {self.auto_precision!r} with precision {self.precision!r}: only an auto precision "
                "is resolved, and only to bf16 (fp32 is what auto always meant on a CPU)"
            )

    def to_dict(self) -> dict:
        """The spec as records store it: ``precision`` and ``keep_weights`` only when not at their defaults (so
        records written before they existed read the same)."""
        spec = dataclasses.asdict(self)
        if self.precision == "auto":
            del spec["precision"]
        later = (
            "keep_weights", "source_experiment", "source_key", "allow_overlap", "memory_format", "auto_precision",
            "search_storage", "train_fraction",
        )  # fmt: skip
        for name in later:
            if spec[name] == RunSpec.__dataclass_fields__[name].default:
                del spec[name]
        spec["eval_sets"] = [s.to_dict() for s in self.eval_sets]
        if not spec["eval_sets"]:
            del spec["eval_sets"]
        return spec

    @classmethod
    def from_dict(cls, spec: dict) -> RunSpec:
        """The spec of a record (a record made before ``precision`` existed ran ``auto``)."""
        epochs = spec.get("epochs")
        sets = tuple(EvalSetSpec.from_dict(s) for s in spec.get("eval_sets", ()))
        return cls(**{**spec, "epochs": tuple(epochs) if isinstance(epochs, list) else epochs, "eval_sets": sets})

    def stem(self, key: str) -> str:
        """File stem of the run's record: readable first, unique by the key's prefix."""
        precision = identity_precision(self)
        precision = "" if precision == "auto" else f"-{precision}"
        fraction = self.fraction_tag("-")
        return f"{Path(self.protocol).stem}-r{self.resolution}-s{self.seed}{precision}{fraction}-{key[:12]}"

    @property
    def label(self) -> str:
        return f"{self.dataset}/{self.backbone}/{self.protocol}{self.fraction_tag('/')}/s{self.seed}"

    def fraction_tag(self, sep: str) -> str:
        """``<sep>f0.25`` for a run on a share of the training split; "" for the whole (names stay as they were)."""
        return "" if self.train_fraction == 1.0 else f"{sep}f{self.train_fraction:g}"


def identity_precision(spec: RunSpec) -> str:
    """The precision as the identity, the key, file names and tables name it: what the numbers were made in.

    ``auto`` stays ``auto`` where it means what it always has, the device's standing precision (fp32 on a CPU,
    bf16 or fp16 autocast on CUDA), so every record made before the CPU's choice was measured keeps its key. A
    CPU's measured bf16 (``spec.auto_precision``) is ``bf16``: another experiment, the same one as asking for bf16.
    """
    return spec.auto_precision or spec.precision


def protocol_label(protocol: str, precision: str) -> str:
    """The protocol as tables name it: with the precision when one was asked for (``scratch@fp32``)."""
    return protocol if precision == "auto" else f"{protocol}@{precision}"


def canonical(value: Any) -> Any:
    """``value`` as plain JSON data for an identity, by the module's rule (schema-2 fields always, later ones
    only when not at their default, descriptive ones never)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value).__name__
        baseline = SCHEMA2_FIELDS.get(kind, frozenset())
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if f.name in DESCRIPTIVE_FIELDS.get(kind, ()) or (f.name not in baseline and _at_default(f, item)):
                continue
            out[f.name] = canonical(item)
        return out
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _at_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value == f.default
    if f.default_factory is not dataclasses.MISSING:
        return value == f.default_factory()
    return False  # a required field added later always enters


RUN_SOURCE = "run:"
"""The prefix of a ``weights`` value that names another run (``run:ham10000/resnet18/scratch``)."""


def weights_identity(
    pretrained: bool, weights_file: str | None, source_experiment: str | None = None
) -> dict[str, str | None]:
    """Which initial weights, as far as is known before training.

    A weights file is hashed up front (so an edited file is another experiment); the library's default
    pretrained weights are named by their source only, since their file is found while building the model.
    A run source enters as written and by the experiment it resolved to (seed-free, so the seeds of a transfer
    experiment stay one experiment); the source *run* enters the run key (:func:`run_key`), since seed 1's
    source run is not seed 0's. Its weights' sha256 is known only once the source has run (it may be planned
    in the same sweep), so the record holds it (:class:`bench.runs.record.WeightsSource`), checked on loading.
    """
    if not pretrained:
        return {"source": "random-init"}
    if weights_file is None:
        return {"source": "default-pretrained"}
    if weights_file.startswith(RUN_SOURCE):
        if source_experiment is None:
            raise ConfigError(f"weights {weights_file!r}: not resolved to a run yet (plan the sweep to resolve it)")
        return {"source": "run", "run": weights_file.removeprefix(RUN_SOURCE), "experiment": source_experiment}
    path = Path(weights_file).expanduser()
    try:
        digest = file_sha256(path)
        known = checkpoint_format(path)
    except OSError as err:
        raise WeightsError(f"weights file {path}: cannot read: {err.strerror}") from None
    if known is None:  # refused while planning: a text file must not fail every run of a sweep one by one
        raise WeightsError(f"weights file {path}: {not_a_checkpoint(path)}")
    return {"source": "file", "sha256": digest}


def experiment_identity(spec: RunSpec, data: DataIdentity | None = None) -> dict[str, Any]:
    """The experiment a run belongs to: its fully resolved config minus the seed.

    Backbone entry, protocol with every phase (epochs applied), resolution asked and effective, precision,
    initial weights, and the data (dataset entry content, fingerprint, pixels sha256; ``data`` is loaded by
    :func:`bench.data.identity.data_identity` when not given). Equal identities: seeds of one experiment, one
    leaderboard row. Versions and device are not in it (they are in the run key).
    """
    from bench.data.identity import data_identity
    from bench.models.registry import get_backbone, resolve_resolution
    from bench.protocol.spec import get_protocol

    entry = get_backbone(spec.backbone)
    protocol = get_protocol(spec.protocol).with_epochs(spec.epochs)
    effective = resolve_resolution(entry, spec.resolution, spec.resolution_policy)  # type: ignore[arg-type]
    if data is None:
        data = data_identity(spec.dataset, effective, spec.data_root, protocol.split)
    return identity_of(
        backbone=canonical(entry),
        protocol=canonical(protocol),
        resolution=spec.resolution,
        policy=spec.resolution_policy,
        effective=effective,
        precision=identity_precision(spec),
        weights=weights_identity(protocol.pretrained, spec.weights_file, spec.source_experiment),
        data={"entry": canonical(data.entry), "fingerprint": data.fingerprint, "pixels_sha256": data.pixels_sha256},
        train_fraction=spec.train_fraction,
    )


def identity_of(
    *, backbone: dict, protocol: dict, resolution: int, policy: str, effective: int, precision: str, weights: dict,
    data: dict, train_fraction: float = 1.0,
) -> dict[str, Any]:  # fmt: skip
    """The identity's layout, in one place (also used to rebuild the identity of a schema-1 record).

    ``train_fraction`` enters only when not 1.0 (:mod:`bench.data.fractions`), by the rule of :func:`canonical`:
    an identity made before it existed is the identity of the same run now.
    """
    identity = {
        "backbone": backbone,
        "protocol": protocol,
        "resolution": {"asked": resolution, "policy": policy, "effective": effective},
        "precision": precision,
        "weights": weights,
        "data": data,
    }
    if train_fraction != 1.0:
        identity["train_fraction"] = train_fraction
    return identity


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``: equal values, equal digests, whatever the key order."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def experiment_id(identity: dict[str, Any]) -> str:
    """The identity's digest: what rows, CIs, ties, plots, comparisons and gates group runs by."""
    return digest(identity)


def run_key(identity: dict[str, Any], seed: int, versions: dict[str, str], source_key: str | None = None) -> str:
    """The run's key: its identity, its seed, the versions of :data:`KEY_VERSIONS`, and the key of the run its
    weights come from (only when there is one: every other key stays what it was)."""
    keyed: dict[str, Any] = {"identity": identity, "seed": seed, "versions": {k: versions.get(k) for k in KEY_VERSIONS}}
    if source_key is not None:
        keyed["source"] = source_key
    return digest(keyed)


def key_of(spec: RunSpec, identity: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """``spec``'s experiment identity (computed, reading the data, when not given) and its run key here: the one
    place both are made, for the planner, the runner, a worker checking its driver and a run source's lookup."""
    from bench.environment import versions

    identity = experiment_identity(spec) if identity is None else identity
    return identity, run_key(identity, spec.seed, versions(), spec.source_key)
