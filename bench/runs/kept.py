"""A run's selected model kept beside its record (:class:`~bench.runs.record.KeptWeights`), and loaded back.

Without it a finished sweep leaves numbers and no model: nothing to deploy, inspect, or start another
experiment from. The runner keeps the model it tested, after selection, once; the record says which file,
its sha256, and everything needed to rebuild the module and feed it an image, so the block can also name a
source of weights for a later run. ``keep_weights = false`` (sweep group) or ``bench run --no-keep-weights``
turns it off; it changes nothing measured, so it is not part of the run key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import ResultsError
from bench.models.kept import load_model_file, save_model
from bench.runs.record import KeptWeights, RunRecord, read_record, weights_path

if TYPE_CHECKING:
    from torch import nn

    from bench.data.loading import LoadedDataset
    from bench.models.registry import BackboneEntry


def keep_model(
    model: nn.Module, record: RunRecord, record_file: Path, entry: BackboneEntry, data: LoadedDataset, data_config: dict
) -> KeptWeights:
    """Save ``model`` (the one the run tested) at :func:`weights_path` of ``record_file``; returns its record block.

    ``data_config`` is timm's resolved data config of the model (its normalisation); the input size is the run's
    effective resolution, the size the model was trained and tested at.
    """
    path = weights_path(record_file)
    side = record.effective_resolution
    saved = save_model(model, path)
    return KeptWeights(
        file=path.name,
        sha256=saved.sha256,
        bytes=saved.bytes,
        arch=entry.arch,
        small_input_stem=entry.small_input_stem,
        num_classes=data.num_classes,
        classes=list(data.classes),
        input_size=[3, side, side],
        mean=[float(v) for v in data_config["mean"]],
        std=[float(v) for v in data_config["std"]],
        resize=data.entry.resize,
        crop=data.entry.crop,
    )


def load_model(record: RunRecord | str | Path) -> nn.Module:
    """The model a run kept (``record``, or the path of its JSON file): the timm model with its head, weights
    loaded strictly, on the CPU, in eval mode, after checking the file's sha256 against the record's."""
    if not isinstance(record, RunRecord):
        record = read_record(Path(record))
    kept = record.kept_weights
    where = record.path or record.label
    if kept is None:
        raise ResultsError(
            f"{where}: this run kept no weights ({record.status}; kept only by finished runs without "
            "keep_weights = false, made by this version or later)"
        )
    if record.path is None:
        raise ResultsError(f"run {record.label}: not read from a results folder, so its weights cannot be found")
    path = record.path.parent / kept.file
    return load_model_file(path, kept.sha256, kept.arch, kept.num_classes, kept.small_input_stem)
