"""Rewrite schema-1 run records as schema 2: with their experiment identity, under their new run key.

Schema 1 did not store the identity, and its run key left the data out. A schema-1 record is rewritten only
when the data it names still has the fingerprint it recorded (so the current dataset entry is the one it
ran with): its identity is rebuilt from what it stored (the resolved protocol, resolution, precision,
weights, fingerprint and pixels digest) plus the current backbone and dataset entries, its key from that
identity, its seed and the versions it ran with, and it moves to its new file name with its ``.probs.npz``.
Any other record is kept where it is, and the report says why; a kept schema-1 record is still read (as an
experiment of its own) and a fresh ``bench run`` makes its run anew.

Usage: ``python -m bench.runs.migrate RESULTS_DIR [RESULTS_DIR ...]`` (each a folder holding ``runs/``).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import from_mapping
from bench.errors import BenchError
from bench.runs.record import (
    SCHEMA_VERSION,
    RunRecord,
    probs_path,
    read_record,
    record_path,
    save_record,
    schema1_identity,
)
from bench.runs.spec import canonical, run_key


@dataclass
class MigrationReport:
    migrated: list[tuple[Path, Path]] = field(default_factory=list)  # old file, new file
    kept: list[tuple[Path, str]] = field(default_factory=list)  # file, why it was not rewritten
    current: int = 0  # records already at the current schema

    def lines(self) -> list[str]:
        out = [f"migrated: {old} -> {new.name}" for old, new in self.migrated]
        out += [f"kept: {path}: {why}" for path, why in self.kept]
        out.append(f"{len(self.migrated)} migrated, {len(self.kept)} kept, {self.current} at schema {SCHEMA_VERSION}")
        return out


def migrate_record(record: RunRecord) -> RunRecord:
    """``record`` (read from schema 1) as schema 2; a :class:`BenchError` says why it cannot be."""
    from bench.data.identity import data_identity
    from bench.models.registry import get_backbone
    from bench.protocol.spec import Protocol

    stored = record.dataset.fingerprint if record.dataset else None
    if stored is None:
        raise BenchError("it records no data fingerprint (it failed before loading its data): nothing to check")
    spec = record.spec
    now = data_identity(spec.dataset, record.effective_resolution, spec.data_root)
    if now.fingerprint != stored:
        raise BenchError(f"its data fingerprint {stored[:12]} is not the current data's {now.fingerprint[:12]}")
    protocol = from_mapping(Protocol, record.protocol, f"{record.path}: protocol")
    raw = {
        "spec": spec.to_dict(),
        "protocol": canonical(protocol),
        "arch": record.arch,
        "effective_resolution": record.effective_resolution,
        "dataset": {"fingerprint": stored, "audit": record.dataset.audit if record.dataset else {}},
        "backbone": {"weights": record.backbone.weights if record.backbone else {}},
    }
    identity = schema1_identity(raw, backbone=canonical(get_backbone(spec.backbone)), entry=canonical(now.entry))
    record.identity = identity
    record.key = run_key(identity, spec.seed, record.versions)
    record.schema = SCHEMA_VERSION
    return record


def migrate_results(results_dir: Path) -> MigrationReport:
    """Migrate every schema-1 record under ``results_dir/runs`` in place (see the module docstring)."""
    report = MigrationReport()
    for path in sorted((results_dir / "runs").rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            schema = json.loads(path.read_text()).get("schema")
            record = read_record(path)
        except (OSError, ValueError, AttributeError, BenchError) as err:
            report.kept.append((path, f"not a readable run record ({err})"))
            continue
        if schema == SCHEMA_VERSION:
            report.current += 1
            continue
        try:
            migrated = migrate_record(record)
        except BenchError as err:
            report.kept.append((path, str(err)))
            continue
        target = record_path(results_dir, migrated.spec, migrated.key)
        if target != path and target.exists():
            report.kept.append((path, f"{target.name} exists already"))
            continue
        save_record(migrated, results_dir)
        if target != path:
            if probs_path(path).exists():
                os.replace(probs_path(path), probs_path(target))
            path.unlink()
        report.migrated.append((path, target))
    return report


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    for folder in argv:
        for line in migrate_results(Path(folder)).lines():
            print(f"{folder}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
