"""Records grouped into experiments: one experiment identity, one run per seed, and a label that tells it apart.

Every consumer that puts runs side by side (leaderboard rows and their CIs and ties, plots, the HTML report,
``bench compare``, ``bench reproduction``) groups them here, so they agree on what a row is: the runs of one
:func:`bench.runs.resolve.experiment_identity`, whatever versions or device ran them.

**One run per seed.** Two records of one experiment and one seed (another harness, torch or timm version, or
another device, so another run key) are the same seed run twice: the row uses the newest by ``created``
(then the larger key, so the choice is deterministic) and :attr:`Experiment.note` says so.

**Labels.** A row is named by its protocol (``scratch``, ``scratch@fp32``). Where experiments of one dataset
share backbone, protocol and resolution but differ elsewhere, the label adds the difference: the epochs
(``scratch e1`` / ``scratch e2``) when only epochs differ, the share of the training split (``scratch f0.25`` /
``scratch f1``: :mod:`bench.data.fractions`) when only that differs, else a short hash of the identity
(``scratch #1a2b3c``) whose legend (:func:`legend`) lists the differing fields.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from bench.runs.identity import ExperimentIdentity
from bench.runs.record import RunRecord

_EPOCHS = re.compile(r"protocol\.phases\.\d+\.epochs")


@dataclass(frozen=True)
class Experiment:
    """The runs of one experiment identity: ``runs`` one per seed, sorted by seed; ``superseded`` the others."""

    id: str
    runs: tuple[RunRecord, ...]
    superseded: tuple[RunRecord, ...] = ()

    @property
    def first(self) -> RunRecord:
        return self.runs[0]

    @property
    def identity(self) -> ExperimentIdentity:
        return self.first.identity

    @property
    def dataset(self) -> str:
        return self.first.spec.dataset

    @property
    def backbone(self) -> str:
        return self.first.spec.backbone

    @property
    def protocol_label(self) -> str:
        return self.first.protocol_label

    @property
    def resolution(self) -> int:
        return self.first.effective_resolution

    @property
    def ok(self) -> tuple[RunRecord, ...]:
        return tuple(r for r in self.runs if r.ok)

    @property
    def short_id(self) -> str:
        return self.id[:6]

    @property
    def note(self) -> str:
        """Which seeds had several records and which one is used ("" when none had)."""
        seeds = sorted({r.spec.seed for r in self.superseded})
        if not seeds:
            return ""
        listed = ", ".join(map(str, seeds))
        return (
            f"seed {listed}: {len(self.superseded) + len(seeds)} records of this experiment (other versions or "
            "device); the newest is used"
        )


def group_experiments(records: Iterable[RunRecord]) -> list[Experiment]:
    """The experiments of ``records``, in the order they first appear, each with one run per seed."""
    by_id: dict[str, list[RunRecord]] = {}
    for r in records:
        by_id.setdefault(r.experiment, []).append(r)
    out = []
    for exp_id, runs in by_id.items():
        newest_first = sorted(runs, key=lambda r: (r.created, r.key), reverse=True)
        chosen: dict[int, RunRecord] = {}
        superseded = []
        for r in newest_first:
            if r.spec.seed in chosen:
                superseded.append(r)
            else:
                chosen[r.spec.seed] = r
        out.append(Experiment(exp_id, tuple(chosen[s] for s in sorted(chosen)), tuple(superseded)))
    return out


def flatten(value: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts and lists as one level of dotted keys (``protocol.phases.0.lr``)."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for k, v in value.items():
            out |= flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out |= flatten(v, f"{prefix}.{i}")
        return out or {prefix: value}
    return {prefix: value}


def differences(experiments: list[Experiment]) -> dict[str, dict[str, object]]:
    """Per experiment id, the identity fields (dotted, as the identity is stored) whose values are not the same
    across ``experiments``."""
    flat = {e.id: flatten(e.identity.to_dict()) for e in experiments}
    fields = set().union(*(f.keys() for f in flat.values()))
    differ = sorted(k for k in fields if len({repr(f.get(k)) for f in flat.values()}) > 1)
    return {e.id: {k: flat[e.id].get(k) for k in differ} for e in experiments}


def labels(experiments: list[Experiment]) -> dict[str, str]:
    """Each experiment's row label: its protocol label, plus what tells it apart from its look-alikes."""
    out = {}
    for group in _look_alikes(experiments):
        if len(group) == 1:
            out[group[0].id] = group[0].protocol_label
            continue
        diff = differences(group)
        only_epochs = all(_EPOCHS.fullmatch(k) for d in diff.values() for k in d)
        only_fraction = any(diff.values()) and all(k == "train_fraction" for d in diff.values() for k in d)
        for e in group:
            if only_fraction:
                out[e.id] = f"{e.protocol_label} f{e.first.spec.train_fraction:g}"
            elif only_epochs:
                epochs = [p.epochs for p in e.identity.protocol.phases]
                out[e.id] = f"{e.protocol_label} e{'+'.join(map(str, epochs))}"
            else:
                out[e.id] = f"{e.protocol_label} #{e.short_id}"
    return out


def legend(experiments: list[Experiment]) -> list[str]:
    """For every hash label of :func:`labels`, the fields that differ from its look-alikes, one line each."""
    lines = []
    names = labels(experiments)
    for group in _look_alikes(experiments):
        if len(group) == 1 or all(" #" not in names[e.id] for e in group):
            continue
        for e, fields in zip(group, differences(group).values(), strict=True):
            shown = ", ".join(f"{k} = {_short(v)}" for k, v in fields.items())
            lines.append(f"{e.backbone} {names[e.id]}: {shown}")
    return lines


def _short(value: object) -> str:
    text = str(value)
    return text[:12] if re.fullmatch(r"[0-9a-f]{40,64}", text) else text


def _look_alikes(experiments: list[Experiment]) -> list[list[Experiment]]:
    """Experiments grouped by what a table shows of them: dataset, backbone, protocol label, resolution."""
    groups: dict[tuple, list[Experiment]] = {}
    for e in experiments:
        groups.setdefault((e.dataset, e.backbone, e.protocol_label, e.resolution), []).append(e)
    return list(groups.values())
