"""Where the temperature is fitted matters: test ECE after scaling fitted on validation vs cross-fitted on test.

For every run of the results folders named whose scores file holds validation scores, both fits of
:func:`bench.evaluation.calibration.calibrate`: the temperature fitted on validation, and the one cross-fitted on
the test halves that records without validation scores get (the ``‡`` cells of ``bench leaderboard --columns
calibration``). Where validation and test come from one distribution the two agree; where the test split is
shifted from validation (chest X-ray's test set is another collection's) the cross-fitted figure is what a
temperature fitted on the test distribution would leave, better than a validation-fitted one does.
docs/metrics.md quotes it::

    python scripts/calibration_fit.py results/mission-fair
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.evaluation.calibration import calibrate
from bench.evaluation.scores import TestScores
from bench.reports.calibration_columns import calibration_of


def main(folders: list[str]) -> int:
    rows: dict[tuple[str, str, str], list[tuple[float, float, float]]] = defaultdict(list)
    for folder in folders:
        for path in sorted(Path(folder).glob("runs/*/*/*.probs.npz")):
            saved = TestScores.load(path)
            if saved.val is None:
                continue
            on_val = calibration_of(saved)  # fitted on validation, as the leaderboard does
            crossed = calibrate(saved.labels, saved.probs, saved.logits)
            figures = (on_val.before.ece, on_val.scaled.ece, crossed.scaled.ece)
            rows[Path(folder).name, path.parts[-3], path.parts[-2]].append(figures)
    if not rows:
        print(f"no run with saved validation scores under {', '.join(folders)}", file=sys.stderr)
        return 2
    print(f"{'results':13} {'dataset':11} {'backbone':22} {'runs':>4} {'ECE':>6} {'val-fit':>8} {'x-fit':>6}")
    for (results, dataset, backbone), values in sorted(rows.items()):
        before, on_val, crossed = np.mean(values, axis=0)
        print(f"{results:13} {dataset:11} {backbone:22} {len(values):4d} {before:6.3f} {on_val:8.3f} {crossed:6.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["results/mission-fair"]))
