"""Run records: the typed :class:`RunRecord`, its one file layout, and its one atomic writer.

A record holds everything needed to trust and reproduce a number: the spec and its experiment identity
(:mod:`bench.runs.spec`), the weights' provenance, the data fingerprint, per-epoch history, metrics,
timings, latency, and the environment. It is one JSON file per run at :func:`record_path`, with the test
probabilities beside it at :func:`probs_path` and the selected model at :func:`weights_path`
(:class:`KeptWeights`). Files are written to a temporary name and renamed (:func:`atomic_write_bytes`),
so a killed process never leaves a half-written record that a later read could take for a result.

Every part is a typed object (:class:`~bench.evaluation.values.MetricValues`, :class:`~bench.train.history.EpochLog`,
:class:`~bench.latency.timing.LatencyResult`, :class:`~bench.train.engine.EngineConfig`,
:class:`~bench.runs.identity.ExperimentIdentity`); :meth:`RunRecord.to_json` and :meth:`RunRecord.from_json` are
the only places a record is a dict, and reading then writing a record gives its file back byte for byte.

Schema 3 stores the protocol once, in the identity; what trained is derived from it and the search's chosen
values (:attr:`RunRecord.protocol`). A schema-2 record also stored that trained protocol at the top level: it is
kept verbatim among the fields this version does not read (``extra``), so a schema-2 record stays byte-identical.
JSON under ``runs/`` that is not a record, or is damaged, or of a schema this version does not read, is skipped
with a warning naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.errors import ResultsError
from bench.evaluation.eval_results import EvalSetResult
from bench.evaluation.values import MetricValues
from bench.files import jsonable, write_json
from bench.latency.timing import LatencyResult
from bench.precision import PRECISIONS, Precision
from bench.protocol.spec import Protocol
from bench.runs.health import RunHealth, run_health
from bench.runs.identity import ExperimentIdentity
from bench.runs.spec import RunSpec, identity_precision, protocol_label
from bench.runs.trials import SearchSummary
from bench.train.engine import EngineConfig
from bench.train.history import EpochLog

__all__ = ["PRECISIONS", "Precision", "RunSpec"]  # re-exported: the engine and the CLI import them from here

SCHEMA_VERSION = 3
READABLE_SCHEMAS = (2, 3)

Status = Literal["running", "ok", "failed", "unfinished", "skipped"]
"""``ok`` and ``failed`` are results, the only statuses stored. An executor reports a run it did not finish as
``unfinished`` (its environment stopped it: :mod:`bench.runs.unfinished`) or ``skipped`` (another process
holds its claim: :mod:`bench.runs.claims`); neither is ever written, so the run stays to do."""

STORED: tuple[Status, ...] = ("ok", "failed")


@dataclass
class Environment:
    """Where and with what a run ran (not part of its identity: the same experiment on another machine)."""

    versions: dict[str, str]
    git_commit: str | None
    platform: str | None
    device: dict[str, Any]
    executor: dict[str, Any] | None = None


@dataclass
class DatasetSummary:
    """The data a run saw: classes, fingerprint, class counts per split, and the split audit."""

    name: str
    classes: list[str]
    fingerprint: str
    resolution: int
    class_counts: dict[str, list[int]]
    audit: dict[str, Any] = field(default_factory=dict)


@dataclass
class BackboneSummary:
    name: str
    arch: str
    weights: dict[str, Any]
    params: int
    gmacs: float


@dataclass
class KeptWeights:
    """The selected model of a run, kept as safetensors beside its record: enough to rebuild, check and use it.

    ``file`` is the file's name in the record's folder (:func:`weights_path`; a results folder can move, and a
    Ray run writes its files elsewhere first); ``sha256`` and ``bytes`` are the file's. ``arch`` (the timm name)
    and ``small_input_stem`` rebuild the module (:func:`bench.models.registry.build_model`); the head has
    ``num_classes`` outputs named by ``classes`` in order. An image goes in as the run fed it: decoded by the
    dataset entry (``resize`` filter, ``crop``), ``input_size`` (C, H, W: the run's effective resolution, not
    timm's default), a grayscale image repeated to three channels, scaled to [0, 1], then normalised by
    ``mean`` and ``std`` (timm's resolved data config for the architecture). Load it with
    :func:`bench.runs.kept.load_model`.
    """

    file: str
    sha256: str
    bytes: int
    arch: str
    small_input_stem: bool
    num_classes: int
    classes: list[str]
    input_size: list[int]
    mean: list[float]
    std: list[float]
    resize: str
    crop: str


@dataclass
class WeightsSource:
    """The run a run's initial weights came from (``weights_file = "run:..."``, or a kept file with its record).

    ``run`` is the source's label, ``key`` its run key and ``experiment`` its experiment id, ``sha256`` that of the
    kept weights loaded (checked against the source record's before loading). ``overlap`` is what the leakage
    check (:func:`bench.data.leakage.check_overlap`) found: ``count`` target val/test images in the source's
    training data (nonzero only where the run allowed it), by test, with the first few files.
    """

    run: str
    key: str
    experiment: str
    sha256: str
    overlap: dict[str, Any] = field(default_factory=dict)


@dataclass
class Selection:
    """Which epoch's model was tested, chosen on validation ``on``."""

    on: str
    best_epoch: int
    best_score: float | None
    stopped_early: list = field(default_factory=list)


@dataclass(frozen=True)
class LatencyFigure:
    """A run's batch-1 latency as tables use it; ``noisy`` figures never stabilised (``noisy_reason`` says why)."""

    ms_p50: float | None
    throughput: float | None
    noisy: bool
    noisy_reason: str | None
    device: str


def device_label(fingerprint: dict) -> str:
    """A device fingerprint as one short name (GPU, else CPU model)."""
    fp = fingerprint
    return str(fp.get("gpu_name") or fp.get("name") or fp.get("cpu_model") or fp.get("kind") or "unknown")


@dataclass
class RunRecord:
    """One run, as stored. ``path`` is where it was read from or written to (not stored in the file)."""

    key: str
    status: Status
    created: str
    spec: RunSpec
    identity: ExperimentIdentity
    arch: str
    effective_resolution: int
    versions: dict[str, str]
    environment: Environment
    schema: int = SCHEMA_VERSION
    timings_s: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    error_detail: str | None = None
    dataset: DatasetSummary | None = None
    engine: EngineConfig | None = None
    backbone: BackboneSummary | None = None
    resumed_at_epoch: int | None = None
    history: list[EpochLog] = field(default_factory=list)
    selection: Selection | None = None
    val: MetricValues | None = None  # the kept epoch's, with its loss
    test: MetricValues | None = None
    latency: list[LatencyResult] = field(default_factory=list)
    kept_weights: KeptWeights | None = None
    weights_source: WeightsSource | None = None
    health: RunHealth | None = None  # stored by the runner since it existed; training_health() for every record
    eval_sets: dict[str, EvalSetResult] = field(default_factory=dict)  # by name: corrupted copies, external data
    search: SearchSummary | None = None  # the protocol's search of this experiment: every trial, the chosen values
    extra: dict[str, Any] = field(default_factory=dict)  # fields this version does not read, kept on rewrite
    path: Path | None = None

    @property
    def experiment(self) -> str:
        """The experiment id (:attr:`bench.runs.identity.ExperimentIdentity.id`): equal for the seeds of one
        experiment."""
        return self.identity.id

    @property
    def protocol(self) -> Protocol:
        """The protocol that trained: the identity's, with the search's chosen values in place where it searched."""
        if self.search is None:
            return self.identity.protocol
        return self.identity.protocol.tuned(self.search.chosen)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def protocol_label(self) -> str:
        spec = self.spec
        return protocol_label(spec.protocol, identity_precision(spec), spec.fused_optimizer, spec.compile)

    @property
    def label(self) -> str:
        s, r = self.spec, self.effective_resolution
        return f"{s.dataset}/{s.backbone}/{self.protocol_label}/r{r}{s.fraction_tag('/')}/s{s.seed}"

    @property
    def epochs_run(self) -> int:
        """Epochs trained (validated): the protocol's epochs are a maximum that early stopping may cut."""
        return len(self.history)

    def training_health(self) -> RunHealth | None:
        """Did it learn, converge, keep a sane loss (:mod:`bench.runs.health`): as stored, or derived from the
        record's validation metrics and history where it predates the field; None for a run that did not finish."""
        if self.health is not None or not self.ok or None in (self.selection, self.dataset, self.val):
            return self.health
        assert self.selection is not None and self.dataset is not None and self.val is not None
        s = self.selection
        return run_health(self.val, self.history, s.on, s.best_epoch, self.dataset.classes)

    def score(self, metric: str) -> float:
        """A test metric; NaN where undefined (stored as null, since JSON has no NaN) or not scored."""
        return math.nan if self.test is None else self.test.score(metric)

    def latency_b1(self) -> LatencyFigure | None:
        """The batch-1 latency figure of the trained model, if it was measured."""
        b1 = next((lat for lat in self.latency if lat.batch_size == 1), None)
        if b1 is None:
            return None
        return LatencyFigure(
            ms_p50=b1.ms_per_image_p50,
            throughput=b1.throughput_img_s,
            noisy=b1.noisy,
            noisy_reason=b1.noisy_reason,
            device=device_label(b1.fingerprint or self.environment.device),
        )

    def probs_path(self) -> Path:
        if self.path is None:
            raise ResultsError(f"run {self.key[:12]}: not read from a results folder, so no saved probabilities")
        return probs_path(self.path)

    def to_json(self) -> dict[str, Any]:
        """The record as its JSON file holds it (optional parts left out while empty; NaN as null)."""
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "path"):
                continue
            value = _stored(getattr(self, f.name))
            if value is None or (value in ([], {}) and f.name != "timings_s"):
                continue
            out[f.name] = value
        return jsonable(out)

    @classmethod
    def from_json(cls, data: dict[str, Any], path: Path | None = None) -> RunRecord:
        """A record from its JSON; raises KeyError/TypeError/ValueError on a malformed one."""
        schema = data.get("schema")
        if schema not in READABLE_SCHEMAS:
            raise ValueError(f"record schema {schema!r}, this version reads {READABLE_SCHEMAS}")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "path"}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["spec"] = RunSpec.from_dict(data["spec"])
        kwargs["identity"] = ExperimentIdentity.from_dict(data["identity"])
        for name, read in _READERS.items():
            if kwargs.get(name) is not None:
                kwargs[name] = read(kwargs[name])
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**kwargs, extra=extra, path=path)


def _stored(value: Any) -> Any:
    """A field's JSON form: a typed part by its own ``to_dict`` (its one writer), another dataclass field by field."""
    if isinstance(value, list):
        return [_stored(item) for item in value]
    if isinstance(value, dict):
        return {name: _stored(item) for name, item in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _fields_of(kind: type) -> Callable[[dict[str, Any]], Any]:
    """A reader of a dataclass stored field by field (keys it does not know are dropped)."""

    def read(data: dict[str, Any]) -> Any:
        names = {f.name for f in dataclasses.fields(kind)}
        return kind(**{k: v for k, v in data.items() if k in names})

    return read


_READERS: dict[str, Callable[[Any], Any]] = {
    "environment": _fields_of(Environment),
    "dataset": _fields_of(DatasetSummary),
    "backbone": _fields_of(BackboneSummary),
    "selection": _fields_of(Selection),
    "kept_weights": _fields_of(KeptWeights),
    "weights_source": _fields_of(WeightsSource),
    "health": _fields_of(RunHealth),
    "search": SearchSummary.from_dict,
    "engine": EngineConfig.from_dict,
    "val": MetricValues.from_dict,
    "test": MetricValues.from_dict,
    "history": lambda items: [EpochLog.from_dict(item) for item in items],
    "latency": lambda items: [LatencyResult.from_dict(item) for item in items],
    "eval_sets": lambda sets: {name: EvalSetResult.from_dict(block) for name, block in sets.items()},
}
"""How each typed part of a record is read from its JSON: the inverse of :func:`_stored`."""


# ------------------------------------------------------------------------------------------- file layout


def record_path(results_dir: Path, spec: RunSpec, key: str) -> Path:
    """The one place a run's record lives: ``runs/<dataset>/<backbone>/<stem>.json``."""
    return results_dir / "runs" / spec.dataset / spec.backbone / f"{spec.stem(key)}.json"


def probs_path(record_file: Path) -> Path:
    """The test probabilities beside a record."""
    return record_file.with_suffix(".probs.npz")


def weights_path(record_file: Path) -> Path:
    """The selected model's weights beside a record (git-ignored under results/: records stay small)."""
    return record_file.with_suffix(".safetensors")


def checkpoint_path(record_file: Path) -> Path:
    """The epoch checkpoint of an unfinished run beside where its record will be."""
    return record_file.with_suffix(".ckpt")


# ------------------------------------------------------------------------------------------- writing


def save_record(record: RunRecord, results_dir: Path) -> Path:
    """Write ``record`` at its :func:`record_path` under ``results_dir``; sets and returns ``record.path``."""
    if record.status not in STORED:
        raise ValueError(f"run {record.key[:12]}: a {record.status!r} run is not a result, never a record")
    path = record_path(results_dir, record.spec, record.key)
    write_json(path, record.to_json())
    record.path = path
    return path


# ------------------------------------------------------------------------------------------- reading


def read_record(path: Path) -> RunRecord:
    """The record at ``path``; a :class:`ResultsError` naming it when it is not a readable run record."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: not a readable run record ({err})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a run record (a JSON {type(data).__name__})")
    try:
        return RunRecord.from_json(data, path)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ResultsError(f"{path}: not a run record ({type(err).__name__}: {err})") from None


def load_records(results_dir: Path) -> list[RunRecord]:
    """Every run record under ``results_dir/runs``, in path order.

    Temp files of interrupted writes are ignored; a file that is not a readable record (foreign JSON, a
    damaged or newer one) is skipped with a warning naming it, so one bad file never stops a table.
    """
    records = []
    for path in sorted((results_dir / "runs").rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            records.append(read_record(path))
        except ResultsError as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
    return records
