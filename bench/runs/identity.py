"""What makes two runs the same experiment: the :class:`ExperimentIdentity`, its id, and the run key.

A leaderboard row, a CI, a tie test, a plot point, a paired comparison and a gate's pairing all need one
answer to "are these two runs the same experiment?". :func:`bench.runs.resolve.experiment_identity` answers: the
fully resolved config of a run minus its seed. Two runs with equal identities differ only by seed (and by
the machine and library versions that ran them), so they are seeds of one experiment; anything else that
differs (epochs, a phase's lr, weights, precision, the data) makes another experiment and another row.

The identity is a frozen object readers take attributes from (``identity.protocol.phases``,
``identity.resolution.effective``); :meth:`ExperimentIdentity.to_dict` is its one canonical serialisation, what
a record stores and what :func:`experiment_id` and :func:`run_key` hash. The run key hashes the identity, the
seed and the versions that change numbers (backbone-bench, torch, timm): a finished record under that key is
the run, and anything that changes the key, the data included, is a new run rather than a skip.

**One rule keeps identities stable as configs grow** (:func:`canonical`): every field of the config
dataclasses that existed at record schema 2 (:data:`SCHEMA2_FIELDS`) always enters the identity; a field
added later enters only while its value differs from its declared default. So a new protocol or dataset
field whose default reproduces the old behaviour leaves every existing identity and key as it was, and
its first non-default use is a new experiment. Descriptive fields (titles, licences, where files are) never
enter (:data:`DESCRIPTIVE_FIELDS`): they do not change a number. The same rule makes the canonical form
lossless for the protocol: a field left out is at its default, so :meth:`ExperimentIdentity.from_dict` rebuilds
the whole :class:`~bench.protocol.spec.Protocol` from it.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import from_mapping
from bench.errors import ConfigError, WeightsError
from bench.files import checkpoint_format, file_sha256, not_a_checkpoint
from bench.protocol.spec import Protocol

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

RUN_SOURCE = "run:"
"""The prefix of a ``weights`` value that names another run (``run:ham10000/resnet18/scratch``)."""


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


@dataclass(frozen=True)
class Resolution:
    """The input resolution asked for, the policy that resolved it, and the one the run trained and tested at."""

    asked: int
    policy: str
    effective: int


@dataclass(frozen=True)
class InitialWeights:
    """Where a run's initial weights come from, as far as is known before training (:func:`initial_weights`)."""

    source: str  # random-init, default-pretrained, file or run
    sha256: str | None = None  # a weights file's digest
    run: str | None = None  # a run source as written, without ``run:``
    experiment: str | None = None  # the experiment that run source resolved to

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class DataContent:
    """The data part: the dataset entry's canonical form, the split fingerprint and the decoded pixels' digest."""

    entry: dict[str, Any] | None
    fingerprint: str | None
    pixels_sha256: str | None

    @classmethod
    def of(cls, data: DataIdentity) -> DataContent:
        return cls(canonical(data.entry), data.fingerprint, data.pixels_sha256)


@dataclass(frozen=True)
class ExperimentIdentity:
    """One experiment: a run's fully resolved config minus its seed (see the module docstring).

    ``backbone`` is the backbone entry's canonical form (its number-changing fields); ``protocol`` is the
    declared protocol with the run's epochs applied (a searched protocol keeps its search space: what trained is
    :attr:`bench.runs.record.RunRecord.protocol`); ``precision`` is :func:`bench.runs.spec.identity_precision`;
    ``train_fraction`` the share of the training split trained on; ``fused_optimizer`` whether a fused AdamW kernel
    was asked for, ``compile`` whether training ran through ``torch.compile`` (:class:`bench.runs.spec.RunSpec`).
    """

    backbone: dict[str, Any]
    protocol: Protocol
    resolution: Resolution
    precision: str
    weights: InitialWeights
    data: DataContent
    train_fraction: float = 1.0
    fused_optimizer: bool = False
    compile: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The canonical serialisation: what records store and :attr:`id` hashes (``train_fraction`` only when
        not 1.0, ``fused_optimizer`` and ``compile`` only when on, by the rule of :func:`canonical`, so an identity
        made before they existed is the same now)."""
        out = {
            "backbone": self.backbone,
            "protocol": canonical(self.protocol),
            "resolution": dataclasses.asdict(self.resolution),
            "precision": self.precision,
            "weights": self.weights.to_dict(),
            "data": dataclasses.asdict(self.data),
        }
        if self.train_fraction != 1.0:
            out["train_fraction"] = self.train_fraction
        if self.fused_optimizer:
            out["fused_optimizer"] = True
        if self.compile:
            out["compile"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentIdentity:
        """The identity a record stored; the inverse of :meth:`to_dict` (ConfigError on a malformed protocol)."""
        return cls(
            backbone=data["backbone"],
            protocol=from_mapping(Protocol, data["protocol"], "identity"),
            resolution=Resolution(**data["resolution"]),
            precision=data["precision"],
            weights=InitialWeights(**data["weights"]),
            data=DataContent(**data["data"]),
            train_fraction=data.get("train_fraction", 1.0),
            fused_optimizer=data.get("fused_optimizer", False),
            compile=data.get("compile", False),
        )

    @functools.cached_property
    def id(self) -> str:
        """The experiment id: the digest of :meth:`to_dict`; what rows, CIs, ties, plots, comparisons and gates
        group runs by."""
        return digest(self.to_dict())


def initial_weights(pretrained: bool, weights_file: str | None, source_experiment: str | None = None) -> InitialWeights:
    """Which initial weights, as far as is known before training.

    A weights file is hashed up front (so an edited file is another experiment); the library's default
    pretrained weights are named by their source only, since their file is found while building the model.
    A run source enters as written and by the experiment it resolved to (seed-free, so the seeds of a transfer
    experiment stay one experiment); the source *run* enters the run key (:func:`run_key`), since seed 1's
    source run is not seed 0's. Its weights' sha256 is known only once the source has run (it may be planned
    in the same sweep), so the record holds it (:class:`bench.runs.record.WeightsSource`), checked on loading.
    """
    if not pretrained:
        return InitialWeights("random-init")
    if weights_file is None:
        return InitialWeights("default-pretrained")
    if weights_file.startswith(RUN_SOURCE):
        if source_experiment is None:
            raise ConfigError(f"weights {weights_file!r}: not resolved to a run yet (plan the sweep to resolve it)")
        return InitialWeights("run", run=weights_file.removeprefix(RUN_SOURCE), experiment=source_experiment)
    path = Path(weights_file).expanduser()
    try:
        sha256 = file_sha256(path)
        known = checkpoint_format(path)
    except OSError as err:
        raise WeightsError(f"weights file {path}: cannot read: {err.strerror}") from None
    if known is None:  # refused while planning: a text file must not fail every run of a sweep one by one
        raise WeightsError(f"weights file {path}: {not_a_checkpoint(path)}")
    return InitialWeights("file", sha256=sha256)


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``: equal values, equal digests, whatever the key order."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def experiment_id(identity: ExperimentIdentity) -> str:
    """The identity's digest (:attr:`ExperimentIdentity.id`)."""
    return identity.id


def run_key(identity: ExperimentIdentity, seed: int, versions: dict[str, str], source_key: str | None = None) -> str:
    """The run's key: its identity, its seed, the versions of :data:`KEY_VERSIONS`, and the key of the run its
    weights come from (only when there is one: every other key stays what it was)."""
    keyed: dict[str, Any] = {
        "identity": identity.to_dict(),
        "seed": seed,
        "versions": {k: versions.get(k) for k in KEY_VERSIONS},
    }
    if source_key is not None:
        keyed["source"] = source_key
    return digest(keyed)
