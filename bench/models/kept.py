"""A trained model kept as safetensors, and read back exactly as it was tested.

A run's numbers describe its selected (best-validation) model; keeping that model lets a user deploy it,
inspect it or start another experiment from it without retraining. The file holds the state dict only
(CPU, contiguous tensors; safetensors, so nothing in it is executed on load), and whoever keeps it records
its sha256, so a file swapped or damaged since is refused by name rather than loaded. Reading rebuilds the
module from the architecture alone (:func:`bench.models.registry.build_model`, the layout options included)
and loads strictly (:func:`bench.models.weights.load_strict`): every tensor of the file and of the module is
accounted for, so a kept model never comes back half-initialised.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
from torch import nn

from bench.errors import WeightsError
from bench.files import atomic_write_bytes, file_sha256
from bench.models.registry import build_model
from bench.models.weights import load_except_head, load_strict, read_checkpoint


@dataclass(frozen=True)
class SavedFile:
    """What :func:`save_model` wrote: the file's sha256 and its size."""

    sha256: str
    bytes: int


def save_model(model: nn.Module, path: Path) -> SavedFile:
    """Write ``model``'s state dict to ``path`` as safetensors, atomically.

    No header metadata: safetensors writes its metadata map in hash order, so two keys would make the same
    model's file (and sha256) differ from one write to the next; the record says whose file it is.
    """
    state = {name: t.detach().to("cpu").contiguous() for name, t in model.state_dict().items()}
    blob = safetensors.torch.save(state)
    atomic_write_bytes(path, blob)
    return SavedFile(hashlib.sha256(blob).hexdigest(), len(blob))


def load_model_file(path: Path, sha256: str, arch: str, num_classes: int, small_input_stem: bool = False) -> nn.Module:
    """The model kept at ``path``, on the CPU in eval mode, after checking the file is the one ``sha256`` names."""
    what = _checked(path, sha256)
    model = build_model(arch, num_classes, small_input_stem)
    load_strict(model, read_checkpoint(path, what), what, arch)
    return model.eval()


def load_backbone_file(model: nn.Module, path: Path, sha256: str, arch: str) -> None:
    """Start ``model`` (its new head for another task) from the kept model at ``path``: every tensor but the
    head's, loaded strictly (:func:`bench.models.weights.load_except_head`), after the same sha256 check."""
    what = _checked(path, sha256)
    load_except_head(model, read_checkpoint(path, what), what, arch)


def _checked(path: Path, sha256: str) -> str:
    """How messages name the kept file at ``path``, once it is known to be the one ``sha256`` names."""
    what = f"kept weights {path}"
    if not path.is_file():
        raise WeightsError(f"{what} do not exist (moved or deleted since the run kept them?)")
    found = file_sha256(path)
    if found != sha256:
        raise WeightsError(f"{what}: sha256 {found[:16]}... is not the record's {sha256[:16]}...: the file changed")
    return what
