"""Training on a share of the training split: which images, and why those.

A data-efficiency curve (issue 31; MedIMeta's few-shot curves and MedMNIST+'s resolution sweep are its peers)
compares backbones at, say, 10, 25, 50 and 100% of the training images. Its points compare only if the subsets
are

* **stratified**: each class keeps its share, ``round(f * n_c)`` of its ``n_c`` images and never fewer than 1,
  so no class vanishes from a small fraction;
* **nested**: the 10% images are inside the 25%, inside the 50%: a step along the curve adds data, never swaps it;
* **the same for every backbone and every seed**: the run seed varies initialisation and batch order only, so
  the seed spread at one fraction is training noise, not luck in which images were drawn.

**How.** Each training image belongs to a *unit*: its group where the layout has groups (HAM10000's lesion, by
``metadata_csv.group_column``, the grouping the splits use), else the image itself. Units are ordered by the
sha256 of their name (:func:`unit_order`), and a class's share at fraction ``f`` is the shortest prefix of that
order, among the units holding images of the class, that reaches ``round(f * n_c)`` of them (at least 1). Prefixes
of one order under a target that grows with ``f`` are nested. The order uses neither the run seed nor the backbone,
so every run on the dataset trains on the same images; and it hashes each name alone instead of shuffling the list
with a seed drawn from the data fingerprint, because that fingerprint includes the decoded resolution (a backbone
upsized to its minimum input would draw other images), and a shuffle would move every image when one is added.

**Groups stay whole**: a lesion's images all train or none do, so a near-duplicate of a training image never
enters a later fraction as new data. A class then gets the images it asks for or a few more (the last lesion's
others); a group with images of several classes is in the order of each and enters, whole, with the first class
whose prefix reaches it. Validation and test are never reduced: model selection and the test estimate stay those
of the whole-split runs, so the curve's points differ only in the training data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from bench.data.images import ImageRows
from bench.data.loading import LoadedDataset, Split
from bench.errors import ConfigError

ORDER_SALT = "backbone-bench train fraction v1"
"""Hashed with each unit's name: the one fixed order. Changing it changes every subset (a new harness version)."""


def unit_order(names: Sequence[str]) -> list[str]:
    """The distinct ``names`` in their fixed order: by the sha256 of the salted name (then the name)."""
    return sorted(set(names), key=lambda n: (hashlib.sha256(f"{ORDER_SALT}:{n}".encode()).digest(), n))


def class_target(fraction: float, count: int) -> int:
    """Images of a class with ``count`` training images that a share ``fraction`` asks for: round half up, at
    least 1 (0 for an absent class), at most ``count``; non-decreasing in ``fraction``, which nesting needs."""
    if count == 0:
        return 0
    return min(count, max(1, math.floor(fraction * count + 0.5)))


def subset_indices(labels: Sequence[int], units: Sequence[str], fraction: float) -> np.ndarray:
    """Sorted indices of the images that train at ``fraction`` (module docstring): stratified by ``labels``, nested,
    units (groups, or one per image) whole; everything at 1.0."""
    labels = np.asarray(labels)
    if len(units) != len(labels):
        raise ValueError(f"{len(units)} units for {len(labels)} labels")
    if not 0 < fraction <= 1:
        raise ConfigError(f"train_fraction {fraction!r}: a training fraction must be in (0, 1]")
    if fraction == 1.0:
        return np.arange(len(labels))
    members: dict[str, list[int]] = {}
    for i, unit in enumerate(units):
        members.setdefault(unit, []).append(i)
    order = unit_order(list(members))
    keep = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        target, count = class_target(fraction, int((labels == c).sum())), 0
        for unit in order:
            index = members[unit]
            hits = int((labels[index] == c).sum())
            if not hits:
                continue
            keep[index] = True
            count += hits
            if count >= target:
                break
    return np.flatnonzero(keep)


def split_units(split: Split) -> list[str]:
    """Each image's unit: its group where it has one, else the image (``image:<id>``, as a blank group reads)."""
    groups = split.groups if split.groups is not None else [None] * len(split.ids)
    return [f"image:{i}" if pd.isna(g) else f"group:{g}" for g, i in zip(groups, split.ids, strict=True)]


def take_train_fraction(data: LoadedDataset, fraction: float) -> tuple[LoadedDataset, dict | None]:
    """``data`` with its training split cut to ``fraction`` (validation and test whole), and what a record states
    about the cut (None at 1.0: the data as loaded, and a record as before)."""
    if fraction == 1.0:
        return data, None
    train = data.train
    units = split_units(train)
    keep = subset_indices(train.labels.cpu().numpy(), units, fraction)
    index = torch.from_numpy(keep)
    images = ImageRows(train.images.file, train.images.rows[keep]) if isinstance(train.images, ImageRows) else None
    ids = [train.ids[i] for i in keep]
    subset = Split(
        images=images if images is not None else train.images[index.to(train.images.device)],
        labels=train.labels[index.to(train.labels.device)],
        ids=ids,
        groups=None if train.groups is None else [train.groups[i] for i in keep],
    )
    audit = {
        "fraction": fraction,
        "images": len(keep),
        "of": len(train),
        "units": len({units[i] for i in keep}),
        "units_of": len(set(units)),
        "unit": "group" if train.groups is not None else "image",
        "ids_sha256": hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest(),
        "rule": "stratified by class, nested, groups whole, sha256 order (bench.data.fractions)",
    }
    return dataclasses.replace(data, train=subset), audit
