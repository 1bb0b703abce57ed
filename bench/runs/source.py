"""Another run as the source of a run's initial weights: ``weights_file = "run:ham10000/resnet18/scratch"``.

In-domain pretraining (train on HAM10000, fine-tune on ISIC) needs no hub: the source is a run this harness
made and kept (:mod:`bench.runs.kept`). A reference names it by what a table shows, ``dataset/backbone/protocol``
and optionally ``/s<seed>``; without a seed each run uses the source run of its own seed. Planning resolves the
reference (:func:`resolve_sources`) among the runs of the sweep itself and the records of the results folder,
so a sweep can train its sources and their targets in one go (sources are planned, and so run, first); the
resolved experiment id and run key go into the spec, hence into the identity and the key (a changed source is
a new run). A kept ``.safetensors`` file named by path whose record lies beside it is that record's run too.

Before a run trains from a source, the leakage check (:mod:`bench.data.leakage`) compares its val/test images
with the source's training data: a planned sweep with an overlap is refused unless ``allow_overlap``, and each
run records what the check found (:class:`~bench.runs.record.WeightsSource`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bench.data.leakage import Overlap, check_overlap
from bench.errors import ConfigError, ResultsError, WeightsError
from bench.models.kept import load_backbone_file
from bench.models.registry import build_model, get_backbone
from bench.protocol.spec import get_protocol
from bench.runs.identity import RUN_SOURCE
from bench.runs.record import RunRecord, WeightsSource, load_records, read_record
from bench.runs.resolve import ResolvedRun, resolve
from bench.runs.spec import RunSpec

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class RunRef:
    """A ``run:`` reference: the run's dataset, backbone, protocol and (when fixed) seed."""

    dataset: str
    backbone: str
    protocol: str
    seed: int | None = None

    @classmethod
    def parse(cls, text: str) -> RunRef:
        parts = text.removeprefix(RUN_SOURCE).split("/")
        seed = None
        if len(parts) == 4 and parts[3][:1] == "s" and parts[3][1:].isdigit():
            seed = int(parts.pop()[1:])
        if len(parts) != 3 or not all(parts):
            raise ConfigError(f"weights {text!r}: a run source reads run:<dataset>/<backbone>/<protocol>[/s<seed>]")
        return cls(*parts, seed=seed)

    def label(self, seed: int) -> str:
        return f"{self.dataset}/{self.backbone}/{self.protocol}/s{seed}"


@dataclass(frozen=True)
class _Candidate:
    spec: RunSpec
    experiment: str
    key: str


def resolve_sources(specs: list[RunSpec], results_dir: Path | None) -> list[ResolvedRun]:
    """``specs`` resolved (:func:`bench.runs.resolve.resolve`), every ``run:`` source first found and written into
    its spec (``source_experiment``, ``source_key``), sources first.

    Sources are looked for among ``specs`` and the finished records of ``results_dir`` (None: ``specs`` only). A
    spec with a run source comes after every spec of the list it may source from, so executors that run in
    plan order train a source before its targets. One-line :class:`ConfigError` for a source that is not there
    (saying how to train it), ambiguous, of another architecture, or for a protocol that loads no weights.
    """
    plain = [s for s in specs if not _is_run_source(s)]
    waiting = [s for s in specs if _is_run_source(s)]
    resolved = [resolve(s) for s in plain]
    candidates = [_Candidate(r.spec, r.identity.id, r.key) for r in resolved]
    if results_dir is not None:
        candidates += [_Candidate(r.spec, r.experiment, r.key) for r in _finished(results_dir)]
    while waiting:
        progress = []
        for spec in waiting:
            found = _resolve(spec, candidates, results_dir, final=False)
            if found is not None:
                progress.append(spec)
                run = resolve(found)
                resolved.append(run)
                candidates.append(_Candidate(run.spec, run.identity.id, run.key))
        if not progress:
            _resolve(waiting[0], candidates, results_dir, final=True)  # raises, saying what to train first
        waiting = [s for s in waiting if s not in progress]
    return resolved


def _is_run_source(spec: RunSpec) -> bool:
    return spec.weights_file is not None and spec.weights_file.startswith(RUN_SOURCE)


def _finished(results_dir: Path) -> list[RunRecord]:
    return [r for r in load_records(results_dir) if r.ok] if (results_dir / "runs").is_dir() else []


def _resolve(spec: RunSpec, candidates: list[_Candidate], results_dir: Path | None, final: bool) -> RunSpec | None:
    assert spec.weights_file is not None
    ref = RunRef.parse(spec.weights_file)
    where = f"{spec.label}: weights {spec.weights_file!r}"
    if not get_protocol(spec.protocol).pretrained:
        raise ConfigError(
            f"{where}: protocol {spec.protocol!r} trains from scratch (pretrained = false), so it loads none"
        )
    source, target = get_backbone(ref.backbone), get_backbone(spec.backbone)
    if (source.arch, source.small_input_stem) != (target.arch, target.small_input_stem):
        raise ConfigError(
            f"{where}: the source is a {source.arch}{' (small stem)' * source.small_input_stem}, this run a "
            f"{target.arch}{' (small stem)' * target.small_input_stem}: a run source must be the same architecture"
        )
    seed = spec.seed if ref.seed is None else ref.seed
    matches = {
        c.experiment: c
        for c in candidates
        if (c.spec.dataset, c.spec.backbone, Path(c.spec.protocol).stem, c.spec.seed)
        == (ref.dataset, ref.backbone, ref.protocol, seed)
    }
    if len(matches) > 1:
        raise ConfigError(
            f"{where}: {len(matches)} experiments match {ref.label(seed)} in this sweep and {results_dir} "
            f"({', '.join(e[:8] for e in matches)}); keep one, or name its kept .safetensors file"
        )
    if matches:
        (found,) = matches.values()
        return dataclasses.replace(spec, source_experiment=found.experiment, source_key=found.key)
    if not final:
        return None
    raise ConfigError(
        f"{where}: no run {ref.label(seed)} in this sweep or {results_dir}; train it first: bench run "
        f"--backbones {ref.backbone} --datasets {ref.dataset} --protocol {ref.protocol} --seeds {seed} "
        f"--resolution {spec.resolution} --results-dir {results_dir}"
    )


def check_overlaps(specs: list[RunSpec]) -> None:
    """Refuse, before anything trains, a transfer whose source trained on the target's val/test images (one
    check per pair of datasets; a run that allows the overlap is not checked here, and records it when it runs)."""
    strict = {
        (RunRef.parse(s.weights_file).dataset, s.dataset) for s in specs if _is_run_source(s) and not s.allow_overlap
    }
    for source, target in sorted(strict):
        overlap = check_overlap(source, target)
        if overlap.count:
            raise ConfigError(refusal(overlap))


def refusal(overlap: Overlap) -> str:
    """The one line that refuses a transfer with an overlap, and says how to train anyway."""
    return f"leakage: {overlap.summary()}; set allow_overlap = true (--allow-overlap) to train anyway"


def source_record(spec: RunSpec, results_dir: Path) -> RunRecord | None:
    """The record of the run ``spec``'s weights come from: its resolved ``run:`` source, or the record beside a
    kept ``.safetensors`` file it names; None for any other weights.

    A planned source that has not finished yet is a :class:`ResultsError` (the run is then unfinished, not
    failed, and runs once its source has: executors that run in parallel may get there first).
    """
    if spec.weights_file is None:
        return None
    if not _is_run_source(spec):
        beside = Path(spec.weights_file).expanduser().with_suffix(".json")
        if not beside.is_file():
            return None
        record = read_record(beside)
        return record if record.kept_weights and record.kept_weights.file == Path(spec.weights_file).name else None
    ref = RunRef.parse(spec.weights_file)
    key = spec.source_key
    folder = results_dir / "runs" / ref.dataset / ref.backbone
    if key is None:
        raise ConfigError(f"{spec.label}: weights {spec.weights_file!r} were never resolved to a run")
    found = [read_record(p) for p in sorted(folder.glob(f"*-{key[:12]}.json"))]
    found = [r for r in found if r.key == key]
    if not found:
        raise ResultsError(f"source run {key[:12]} ({spec.weights_file}) has no record in {folder} yet")
    return found[0]


def model_from_source(
    planned: ResolvedRun, record: RunRecord, num_classes: int, drop_rate: float = 0.0
) -> tuple[nn.Module, dict, WeightsSource]:
    """The planned run's model started from the run of ``record``: every tensor but the head's, loaded strictly from its
    kept file (sha256 checked), with a new ``num_classes`` head; also its provenance and the record block.

    A one-line error if the source failed, kept no weights, is of another architecture, or (unless the run
    allows it) trained on the target's val/test images: the leakage check runs here too, the run's last look
    before training, and its counts go into the block.
    """
    where = f"source run {record.label}"
    if not record.ok:
        raise WeightsError(f"{where} failed ({record.error}): retrain it (--retry-failed) before this run")
    kept = record.kept_weights
    if kept is None or record.path is None:
        raise WeightsError(f"{where} kept no weights (keep_weights = false?): rerun it with its weights kept")
    spec, entry = planned.spec, planned.backbone
    if (kept.arch, kept.small_input_stem) != (entry.arch, entry.small_input_stem):
        raise WeightsError(f"{where} is a {kept.arch}, this run a {entry.arch}: a source must be the same architecture")
    root = Path(record.spec.data_root) if record.spec.data_root else None
    target_root = Path(spec.data_root) if spec.data_root else None
    overlap = check_overlap(record.spec.dataset, spec.dataset, root, target_root)
    if overlap.count and not spec.allow_overlap:
        raise ConfigError(refusal(overlap))
    path = record.path.parent / kept.file
    model = build_model(entry.arch, num_classes, entry.small_input_stem, spec.backbone, drop_rate)
    load_backbone_file(model, path, kept.sha256, entry.arch)
    provenance = {"source": "run", "location": str(path), "sha256": kept.sha256, "tag": record.label}
    block = WeightsSource(
        run=record.label, key=record.key, experiment=record.experiment, sha256=kept.sha256, overlap=overlap.to_dict()
    )
    return model, provenance, block
