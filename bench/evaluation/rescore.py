"""Bring stored test metrics in line with the saved test scores they must be recomputable from.

Records made before the metric table scored probabilities as saved (they renormalised each row first, and had
no ``positive``, ``f1``, ``balanced_accuracy_isic`` or ``argmax_ties``), so their ``test`` block may differ from
a recomputation from their ``.probs.npz`` in the last digits of AUC. No model is kept to predict again, so the
``test`` block is recomputed from the saved probabilities as they are, with the record's positive class
(``classes[1]`` for records that do not name one), and so is the ``eval_sets`` block of a run scored on evaluation
sets, from its ``.evalsets.npz`` (:mod:`bench.evaluation.eval_results`); nothing else in the record changes.

    python -m bench.evaluation.rescore results/

rescores every run record under the folder that has a saved scores file beside it and prints what changed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError, ResultsError
from bench.evaluation.eval_results import rescored_eval_sets
from bench.evaluation.scores import TestScores
from bench.evaluation.values import compute_metrics
from bench.files import write_json


@dataclass(frozen=True)
class Rescored:
    path: Path
    changed: tuple[str, ...]
    """The ``test`` keys whose value changed or appeared (and ``eval_sets``, when an eval set's numbers did)."""


def scored_records(root: Path) -> list[Path]:
    """Every finished run record under ``root``: a JSON file with a ``.probs.npz`` beside it."""
    return sorted(p for p in root.rglob("*.json") if p.with_suffix(".probs.npz").is_file())


def rescore(path: Path) -> Rescored:
    """Recompute the ``test`` block of the record at ``path`` from its saved scores and rewrite it if it differs."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ResultsError(f"{path}: not a readable run record ({err})") from None
    if record.get("status") != "ok" or "test" not in record:
        return Rescored(path, ())
    saved = TestScores.load(path.with_suffix(".probs.npz"))
    old = record["test"]
    try:
        new = compute_metrics(saved.labels, saved.probs, record["dataset"]["classes"], old.get("positive")).to_dict()
    except BenchError as err:
        raise ResultsError(f"{path}: cannot rescore: {err}") from None
    sets = {"eval_sets": rescored_eval_sets(path, record["eval_sets"])} if record.get("eval_sets") else {}
    before = path.read_bytes()
    write_json(path, record | {"test": new} | sets)
    if path.read_bytes() == before:
        return Rescored(path, ())
    stored = json.loads(path.read_text())
    changed = [k for k in stored["test"] if stored["test"][k] != old.get(k)]
    changed += ["eval_sets"] if stored.get("eval_sets") != json.loads(before).get("eval_sets") else []
    return Rescored(path, tuple(sorted(changed)))


def rescore_all(root: Path) -> list[Rescored]:
    return [rescore(p) for p in scored_records(root)]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bench.evaluation.rescore RESULTS_DIR", file=sys.stderr)
        return 2
    root = Path(argv[0])
    try:
        if not root.is_dir():
            raise ResultsError(f"{root}: no such results folder")
        done = rescore_all(root)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for r in done:
        if r.changed:
            print(f"{r.path}: {', '.join(r.changed)}")
    print(f"rescored {len(done)} record(s) under {root}: {sum(bool(r.changed) for r in done)} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
