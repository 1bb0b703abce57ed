"""A run resolved once: its names looked up, its identity and key made, at planning, and carried from there.

A :class:`~bench.runs.spec.RunSpec` carries names (a backbone, a dataset, a protocol). :func:`resolve` looks each
up once, in its registry (the backbone entry, the protocol with the run's epochs, the dataset entry under the
protocol's split), resolves the effective resolution and the initial weights (a weights file hashed), reads the
data's identity, and makes the experiment identity and the run key from them. The :class:`ResolvedRun` it returns
goes to the executors (it pickles, for Ray's workers) and to the runner, which reads it and never looks a name up
again, so one run's spec passes each stage once on its way from planning to its saved record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.data.entries import DatasetEntry, with_split
from bench.models.registry import BackboneEntry
from bench.protocol.spec import Protocol
from bench.runs.identity import (
    DataContent,
    ExperimentIdentity,
    Resolution,
    canonical,
    initial_weights,
    run_key,
)
from bench.runs.spec import RunSpec, identity_precision

if TYPE_CHECKING:
    from bench.data.identity import DataIdentity


@dataclass(frozen=True)
class ResolvedRun:
    """A spec with everything it names resolved (see the module docstring); ``key`` is its run key where it was
    resolved (a worker with other versions would key it otherwise: :meth:`key_with`)."""

    spec: RunSpec
    backbone: BackboneEntry
    dataset: DatasetEntry
    """The dataset entry under the protocol's ``split``: what the run loads."""
    identity: ExperimentIdentity
    key: str

    @property
    def protocol(self) -> Protocol:
        """The declared protocol with the run's epochs (a search's chosen values are put in when it has run)."""
        return self.identity.protocol

    @property
    def resolution(self) -> int:
        """The effective resolution: what the run trains and tests at."""
        return self.identity.resolution.effective

    @property
    def label(self) -> str:
        return self.spec.label

    def key_with(self, versions: dict[str, str]) -> str:
        """The run key under ``versions`` (another machine's torch, timm and harness)."""
        return run_key(self.identity, self.spec.seed, versions, self.spec.source_key)


def resolve(spec: RunSpec, data: DataIdentity | None = None) -> ResolvedRun:
    """``spec`` resolved: each registry read once, the data's identity read (memoised) unless ``data`` is given.

    One-line errors for an unknown name, a resolution a backbone refuses, or a weights file that cannot be read.
    """
    from bench.data.folder import dataset_entry
    from bench.data.identity import entry_data_identity
    from bench.environment import versions
    from bench.models.registry import get_backbone, resolve_resolution
    from bench.protocol.spec import get_protocol

    backbone = get_backbone(spec.backbone)
    protocol = get_protocol(spec.protocol).with_epochs(spec.epochs)
    effective = resolve_resolution(backbone, spec.resolution, spec.resolution_policy)
    dataset = with_split(dataset_entry(spec.dataset, spec.data_root), protocol.split)
    if data is None:
        data = entry_data_identity(dataset, effective, spec.data_root)
    identity = ExperimentIdentity(
        backbone=canonical(backbone),
        protocol=protocol,
        resolution=Resolution(spec.resolution, spec.resolution_policy, effective),
        precision=identity_precision(spec),
        weights=initial_weights(protocol.pretrained, spec.weights_file, spec.source_experiment),
        data=DataContent.of(data),
        train_fraction=spec.train_fraction,
        fused_optimizer=spec.fused_optimizer,
        compile=spec.compile,
    )
    return ResolvedRun(spec, backbone, dataset, identity, run_key(identity, spec.seed, versions(), spec.source_key))


def experiment_identity(spec: RunSpec, data: DataIdentity | None = None) -> ExperimentIdentity:
    """The experiment ``spec`` belongs to: its fully resolved config minus the seed (:mod:`bench.runs.identity`).

    Backbone entry, protocol with every phase (epochs applied), resolution asked and effective, precision,
    initial weights, and the data (dataset entry content, fingerprint, pixels sha256; read when ``data`` is not
    given). Versions and device are not in it (they are in the run key).
    """
    return resolve(spec, data).identity
