"""External test sets: another registered dataset of the same task, scored through a label map, with every image
the model's dataset shares removed first.

**Label maps** (:func:`label_map`) map fine classes onto coarse ones (``{fine: coarse}``), declared in the eval
set or in a dataset entry's ``[label_maps.<other entry>]`` table (HAM10000's ``isic`` table: mel, bcc, akiec ->
malignant; nv, bkl, df, vasc -> benign). Whichever side is finer, the scoring happens in the coarse classes:

* ``model_to_data``: the model's classes are the fine ones (a HAM10000 model on ISIC): each coarse class's
  probability is the sum of its fine classes' softmax probabilities, scored against the dataset's own labels,
  with its positive class;
* ``data_to_model``: the dataset's classes are the fine ones (an ISIC model on HAM10000): each image's label is
  mapped to the model's class, its probabilities scored as they are, with the model's positive class; images of
  a class the map leaves out are not scored (counted as ``unmapped``);
* ``identity``: the same classes in the same order, no map needed.

**Not external** (:func:`check_external`): two entries of the same images (``same_source``: chest X-ray and
PneumoniaMNIST are one Kermany cohort, so the second's test split *is* the first's) are refused, since leakage
removal would leave the model's own test images to score. Entries that merely share a source archive (HAM10000
and the ISIC set) are external once the shared images are removed.

**Leakage removal** (:func:`external_split`): an image of the external set is removed when it is in the model's
dataset (any split: an external set shares no image with it at all, whatever split a protocol drew) exactly or
near-exactly (:func:`bench.data.leakage.shared_images`), or, where both record lesions, when its lesion is one of
the model dataset's; then every other image of a removed image's lesion goes too. The counts are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from bench.data.entries import DatasetEntry
from bench.data.leakage import dataset_hashes, shared_images
from bench.data.loading import Split, load_dataset
from bench.errors import ConfigError

Direction = Literal["identity", "model_to_data", "data_to_model"]
SPLITS = {"all": ("train", "val", "test"), "test": ("test",)}


@dataclass(frozen=True)
class LabelMap:
    """How a model's classes meet a dataset's: the map, its direction, the classes scored in and their positive."""

    mapping: dict[str, str]
    direction: Direction
    classes: tuple[str, ...]
    positive: str | None
    source: str
    """Where the map was declared: ``eval set`` or ``datasets/<name>.toml [label_maps.<other>]``."""

    def probs(self, model_probs: np.ndarray, model_classes: tuple[str, ...]) -> np.ndarray:
        """The model's probabilities in the scored classes (summed over fine classes for ``model_to_data``)."""
        if self.direction != "model_to_data":
            return np.asarray(model_probs, dtype=np.float64)
        columns = np.array([self.classes.index(self.mapping[c]) for c in model_classes])
        out = np.zeros((len(model_probs), len(self.classes)), dtype=np.float64)
        np.add.at(out.T, columns, np.asarray(model_probs, dtype=np.float64).T)
        return out

    def labels(self, data_labels: np.ndarray, data_classes: tuple[str, ...]) -> np.ndarray:
        """Each image's label in the scored classes; -1 where the map leaves its class out (not scored)."""
        if self.direction != "data_to_model":
            return np.asarray(data_labels, dtype=np.int64)
        to = np.array([self.classes.index(self.mapping[c]) if c in self.mapping else -1 for c in data_classes])
        return to[np.asarray(data_labels, dtype=np.int64)]


def check_external(model: DatasetEntry, data: DatasetEntry) -> None:
    """A ConfigError when ``data`` is no external set for a model of ``model`` (the same entry or the same images)."""
    if model.name == data.name or data.name in model.same_source or model.name in data.same_source:
        declared = model if data.name in model.same_source else data
        raise ConfigError(
            f"eval set external:{data.name} on {model.name}: not external, the two are the same images (same_source "
            f"in {declared.source_file.name}): removing what they share would leave nothing external to score"
        )


def label_map(model: DatasetEntry, data: DatasetEntry, declared: dict[str, str] | None = None) -> LabelMap:
    """How a model of ``model``'s classes is scored on ``data`` (see the module); a ConfigError naming the map if it
    fits neither direction."""
    if declared is not None:
        mapping, source = declared, "eval set"
    elif data.name in model.label_maps:
        mapping, source = model.label_maps[data.name], f"{model.source_file.name} [label_maps.{data.name}]"
    elif model.name in data.label_maps:
        mapping, source = data.label_maps[model.name], f"{data.source_file.name} [label_maps.{model.name}]"
    elif model.classes == data.classes:
        return LabelMap({}, "identity", model.classes, _positive(model), "the same classes")
    else:
        raise ConfigError(
            f"eval set external:{data.name} on {model.name}: no label map from {list(model.classes)} to "
            f"{list(data.classes)}; give label_map in the eval set or [label_maps.{data.name}] in "
            f"{model.source_file.name}"
        )
    keys, values = set(mapping), set(mapping.values())
    if keys == set(model.classes) and values <= set(data.classes):
        return LabelMap(dict(mapping), "model_to_data", data.classes, _positive(data), source)
    if keys <= set(data.classes) and values <= set(model.classes):
        return LabelMap(dict(mapping), "data_to_model", model.classes, _positive(model), source)
    raise ConfigError(
        f"label map {source} for {model.name} -> {data.name} maps {sorted(keys)} to {sorted(values)}: it must map "
        f"every class of {model.name} {list(model.classes)} onto {data.name}'s {list(data.classes)}, or {data.name}'s "
        f"classes onto {model.name}'s"
    )


def _positive(entry: DatasetEntry) -> str | None:
    """A binary entry's positive class (default its second), None for a multiclass one."""
    return (entry.positive or entry.classes[1]) if entry.num_classes == 2 else None


@dataclass
class ExternalSplit:
    """The external images to score, their labels in the scored classes, and what was removed before."""

    split: Split
    label_map: LabelMap
    data_classes: tuple[str, ...]
    removed: dict = field(default_factory=dict)
    """``checked`` images, ``removed`` in all, by test (``exact``, ``near``, ``lesion`` or None where lesions are
    not in both, ``same_lesion``: other images of a removed image's lesion) and ``unmapped`` (no class in the map)."""


def external_split(
    model: DatasetEntry, model_data_root: str | None, data: DatasetEntry, which: str, resolution: int,
    mapping: LabelMap,
) -> ExternalSplit:  # fmt: skip
    """``data``'s images of ``which`` splits (``all`` or ``test``) at ``resolution``, without those the model's dataset
    shares (see the module), labelled in ``mapping``'s classes."""
    loaded = load_dataset(data, resolution)
    parts = [getattr(loaded, s) for s in SPLITS[which]]
    ids = [i for p in parts for i in p.ids]
    target = dataset_hashes(data.name, SPLITS[which])
    source = dataset_hashes(model.name, ("train", "val", "test"), Path(model_data_root) if model_data_root else None)
    at = {image_id: k for k, image_id in enumerate(target.ids)}
    order = np.array([at[i] for i in ids])  # the hashes' rows in the loaded order (both are split order, by id)
    exact = np.isin(target.exact, source.exact)[order]
    near = shared_images(target, source)[order] & ~exact
    groups = [target.groups[k] for k in order]
    lesion = None
    if any(g is not None for g in groups) and any(g is not None for g in source.groups):
        known = {g for g in source.groups if g is not None}
        lesion = np.array([g is not None and g in known for g in groups]) & ~(exact | near)
    flagged = exact | near | (lesion if lesion is not None else False)
    lesions = {g for g, hit in zip(groups, flagged, strict=True) if hit and g is not None}
    same_lesion = np.array([g is not None and g in lesions for g in groups]) & ~flagged
    labels = mapping.labels(torch.cat([p.labels for p in parts]).cpu().numpy(), data.classes)
    unmapped = (labels < 0) & ~(flagged | same_lesion)
    keep = np.flatnonzero(~(flagged | same_lesion | unmapped))
    if keep.size == 0:
        raise ConfigError(f"eval set external:{data.name} on {model.name}: no image left after removing shared ones")
    images = _gather(parts, keep)
    split = Split(images=images, labels=torch.from_numpy(labels[keep]), ids=[ids[k] for k in keep])
    removed = {
        "checked": len(ids), "removed": int(len(ids) - keep.size), "exact": int(exact.sum()), "near": int(near.sum()),
        "lesion": None if lesion is None else int(lesion.sum()), "same_lesion": int(same_lesion.sum()),
        "unmapped": int(unmapped.sum()),
    }  # fmt: skip
    return ExternalSplit(split, mapping, data.classes, removed)


def _gather(parts: list[Split], keep: np.ndarray) -> torch.Tensor:
    """The kept rows of the parts' images (in their concatenated order) as one uint8 tensor on the CPU."""
    out, start = [], 0
    for part in parts:
        rows = keep[(keep >= start) & (keep < start + len(part))] - start
        if rows.size:
            out.append(part.images[torch.from_numpy(rows)].cpu())
        start += len(part)
    return torch.cat(out)
