"""Run records: one JSON file per run, written atomically, with test probabilities beside it.

A record holds everything needed to trust and reproduce a number: the resolved config, the weights'
provenance, the data fingerprint, per-epoch history, metrics, timings, latency, and the environment.
Files are written to a temporary name and renamed, so a killed process never leaves a half-written
record that a later read could take for a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import ConfigError, ResultsError
from bench.precision import PRECISIONS, Precision

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class RunSpec:
    """What to run; its resolved config's :func:`config_key` (with the protocol and versions) identifies the run.

    ``precision`` is what the user asked of the engine (:func:`bench.train.engine.engine_for`): ``auto`` picks by
    device, the others are kept to or refused. It enters the key only when it is not ``auto``, so the keys
    of records made before it existed (which ran ``auto``) stay valid.
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

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision {self.precision!r} is not one of {', '.join(PRECISIONS)}")

    def to_dict(self) -> dict:
        """The spec as records store and keys hash it: ``precision`` only when it is not ``auto``."""
        spec = dataclasses.asdict(self)
        if self.precision == "auto":
            del spec["precision"]
        return spec

    @classmethod
    def from_dict(cls, spec: dict) -> RunSpec:
        """The spec of a record (a record made before ``precision`` existed ran ``auto``)."""
        epochs = spec.get("epochs")
        return cls(**{**spec, "epochs": tuple(epochs) if isinstance(epochs, list) else epochs})

    def stem(self, key: str) -> str:
        """File stem of the run's record: readable first, unique by the key's prefix."""
        precision = "" if self.precision == "auto" else f"-{self.precision}"
        return f"{self.protocol}-r{self.resolution}-s{self.seed}{precision}-{key[:12]}"


def protocol_label(spec: dict) -> str:
    """The protocol as tables and comparisons name it: with the precision when one was asked for.

    An fp32 run of a config is another experiment than its auto-precision run, so it is another row
    (``scratch@fp32``), never averaged in with it.
    """
    precision = spec.get("precision", "auto")
    return spec["protocol"] if precision == "auto" else f"{spec['protocol']}@{precision}"


def config_key(resolved: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a resolved config: equal configs, equal keys."""
    blob = json.dumps(resolved, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    Any OS error (read-only folder, disk full) becomes a one-line :class:`ResultsError` naming the
    path; the temp file is removed and an earlier file at ``path`` is left untouched.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise ResultsError(f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise ResultsError(f"cannot write {path}: {err.strerror}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _jsonable(value: Any) -> Any:
    """NaN/inf become null (JSON has no NaN); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, payload: dict) -> None:
    atomic_write_bytes(path, json.dumps(_jsonable(payload), indent=1, sort_keys=True).encode())


def write_probs(path: Path, ids: list[str], labels: np.ndarray, probs: np.ndarray) -> None:
    """Test-split probabilities, so every metric (and its bootstrap) can be recomputed later."""
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=np.asarray(ids), labels=labels, probs=probs)
    atomic_write_bytes(path, buf.getvalue())


def read_probs(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in ("ids", "labels", "probs")}
    except (OSError, KeyError, ValueError) as err:
        raise ResultsError(f"{path}: unreadable probabilities file ({err})") from None


def load_records(results_dir: Path) -> list[dict]:
    """Every run record under ``results_dir/runs`` (temp files of interrupted writes are ignored).

    Each record's ``spec`` says its ``precision``: records store it only when it is not ``auto``.
    """
    records = []
    for path in sorted((results_dir / "runs").rglob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ResultsError(f"{path}: not a readable run record ({err})") from None
        if record.get("schema") != SCHEMA_VERSION:
            raise ResultsError(f"{path}: record schema {record.get('schema')!r}, expected {SCHEMA_VERSION}")
        record["spec"] = {"precision": "auto", **record["spec"]}
        record["_path"] = str(path)
        records.append(record)
    return records
