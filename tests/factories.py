"""The one factory of run records for tests: a :class:`RunRecord` as the runner writes it, without training.

Every field a consumer reads is filled in; the arguments change what a test is about. The identity is an
:class:`~bench.runs.identity.ExperimentIdentity` like a real run's, so runs that differ in ``epochs``, ``precision``,
``fingerprint`` or ``lr`` are other experiments, and runs that differ only in ``seed``, ``torch_version`` or
``device`` are seeds of one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.evaluation.scores import TestScores
from bench.evaluation.values import ClassScores, MetricValues
from bench.latency.timing import LatencyResult
from bench.protocol.spec import Phase, Protocol
from bench.runs.identity import DataContent, ExperimentIdentity, InitialWeights, Resolution, run_key
from bench.runs.record import (
    BackboneSummary,
    DatasetSummary,
    Environment,
    RunRecord,
    Selection,
    probs_path,
    save_record,
)
from bench.runs.spec import RunSpec
from bench.train.history import EpochLog

CLASS_COUNTS = {"train": [30, 70], "val": [3, 7], "test": [40, 60]}
STRUCTURE = ("confusion_matrix", "absent_classes", "argmax_ties")  # what a metrics dict holds besides values


def make_record(
    backbone: str = "resnet18",
    seed: int = 0,
    acc: float = 0.8,
    status: str = "ok",
    protocol: str = "scratch",
    dataset: str = "d",
    *,
    epochs: int = 2,
    lr: float = 1e-3,
    precision: str = "auto",
    resolution: int = 28,
    metrics: dict | MetricValues | None = None,
    ms: float | None = None,
    throughput: float | None = None,
    noisy: bool = False,
    device: str = "cpu-x",
    threads: int = 2,
    torch_version: str = "2.14.1",
    fingerprint: str = "f" * 64,
    classes: tuple[str, ...] = ("a", "b"),
    class_counts: dict | None = None,
    created: str = "2026-01-01T00:00:00+00:00",
    params: int = 11_000_000,
    train_fraction: float = 1.0,
) -> RunRecord:
    """A finished (or ``failed``) run. ``metrics`` replaces the default test metrics derived from ``acc`` (scores,
    or a dict of metric values with an optional ``confusion_matrix``: :func:`metric_values`); ``ms`` is the batch-1
    p50 (default ``2 + seed``), flagged ``noisy`` when asked."""
    spec = RunSpec(
        backbone, dataset, protocol, seed=seed, resolution=resolution, epochs=epochs, precision=precision,
        train_fraction=train_fraction,
    )  # fmt: skip
    identity = ExperimentIdentity(
        backbone={"name": backbone},
        protocol=Protocol(protocol, pretrained=False, phases=(Phase("full", epochs, lr, 1.0),)),
        resolution=Resolution(resolution, "upsize", resolution),
        precision=precision,
        weights=InitialWeights("random-init"),
        data=DataContent({"name": dataset}, fingerprint, "p" * 64),
        train_fraction=train_fraction,
    )
    versions = {"backbone-bench": "0.1.0", "torch": torch_version, "timm": "1.0.31"}
    device_fp = {"cpu_model": device, "device_kind": "cpu", "torch_threads": threads, "torch_version": torch_version}
    record = RunRecord(
        key=run_key(identity, seed, versions),
        status=status,  # type: ignore[arg-type]
        created=created,
        spec=spec,
        identity=identity,
        arch=backbone,
        effective_resolution=resolution,
        versions=versions,
        environment=Environment(
            versions={**versions, "numpy": "2.4.6", "scikit-learn": "1.9.1", "python": "3.11.7"},
            git_commit="abc",
            platform="Linux",
            device=device_fp,
        ),
        timings_s={"train": 10.0},
        dataset=DatasetSummary(
            name=dataset,
            classes=list(classes),
            fingerprint=fingerprint,
            resolution=resolution,
            class_counts=class_counts or CLASS_COUNTS,
        ),
    )
    if status != "ok":
        record.error = "DivergedError: loss became nan"
        return record
    default = {
        "accuracy": acc,
        "balanced_accuracy": acc - 0.1,
        "macro_f1": acc - 0.2,
        "auc": acc + 0.1,
        "confusion_matrix": [[30, 10], [10, 50]],
    }
    record.test = metrics if isinstance(metrics, MetricValues) else metric_values(metrics or default, classes)
    record.backbone = BackboneSummary(backbone, backbone, {"source": "random-init"}, params, 0.034)
    val = metric_values({"balanced_accuracy": 0.6}, classes)
    # Validation loss flat: the run converged (bench.train.history); a test about convergence writes its own history.
    record.history = [EpochLog("full", e, lr, 0.7 - e / 10, 0.5, val, 1.0) for e in range(1, epochs + 1)]
    record.selection = Selection("loss", epochs, 0.5, [])
    record.latency = [
        LatencyResult(
            backbone=backbone,
            resolution=resolution,
            input_size=(3, resolution, resolution),
            batch_size=1,
            batch_size_run=1,
            precision="fp32",
            memory_format="contiguous",
            compiled=False,
            device_kind="cpu",
            ms_per_image_p50=2.0 + seed if ms is None else ms,
            throughput_img_s=throughput,
            noisy=noisy,
            noisy_reason="cv 0.4 > 0.1" if noisy else None,
            fingerprint={"cpu_model": device},
        )
    ]
    return record


def metric_values(metrics: dict, classes: tuple[str, ...]) -> MetricValues:
    """Scores with the given metric values: a dict as :meth:`MetricValues.to_dict` writes it is read as such; else
    its numbers are the values and its ``confusion_matrix`` (default: none counted) gives the per-class support."""
    if "per_class" in metrics:
        return MetricValues.from_dict(metrics)
    k = len(classes)
    cm = metrics.get("confusion_matrix") or [[0] * k for _ in range(k)]
    nan = float("nan")
    values = {name: nan if v is None else float(v) for name, v in metrics.items() if name not in STRUCTURE}
    per_class = {c: ClassScores(nan, nan, nan, int(sum(row))) for c, row in zip(classes, cm, strict=True)}
    return MetricValues(classes, None, values, per_class, tuple(tuple(row) for row in cm), metrics.get("argmax_ties"))


def write_run(
    record: RunRecord,
    results_dir: Path,
    probs: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    ids: list[str] | None = None,
) -> RunRecord:
    """Save ``record`` under ``results_dir`` (setting its path) and, given ``probs``, its test probabilities."""
    save_record(record, results_dir)
    if probs is not None:
        assert record.path is not None and labels is not None
        ids = ids if ids is not None else [f"img{i}" for i in range(len(labels))]
        TestScores(np.asarray(ids), np.asarray(labels), np.asarray(probs, dtype=np.float64)).save(
            probs_path(record.path)
        )
    return record


def add_sex_dataset(home: Path, sexes: list[str]) -> None:
    """A copy of the project's ``tiny`` entry named ``meta`` whose images ``img0``, ``img1``, ... have the given
    sex in a metadata file the entry's ``[subgroups]`` table groups by."""
    entry = (home / "datasets" / "tiny.toml").read_text()
    (home / "datasets" / "meta.toml").write_text(
        entry.replace('name = "tiny"', 'name = "meta"')
        + '[subgroups]\nmetadata = "meta.csv"\nid_column = "image_id"\ncolumns = { sex = "sex" }\n'
    )
    (home / "data" / "meta.csv").write_text("image_id,sex\n" + "".join(f"img{i},{s}\n" for i, s in enumerate(sexes)))
