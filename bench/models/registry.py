"""The backbone registry: declarative entries in ``backbones/*.toml`` in front of ``timm.create_model``.

An entry names a timm architecture and the facts the harness needs about it (its minimum input size,
a readable title). Any other timm model name works without an entry: the harness then probes its
minimum input size once. Parameters and MACs are counted by ``torch.utils.flop_counter`` on a real
forward pass at the run's resolution, never by a hand formula.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from bench.config import ResolutionPolicy, check_identifier, from_mapping, load_toml
from bench.errors import ConfigError
from bench.paths import registry_files


@dataclass(frozen=True)
class BackboneEntry:
    """One backbone: a timm architecture name plus what the harness must know to run it anywhere."""

    name: str
    title: str = ""
    family: str = ""
    timm_name: str = ""
    min_input_size: int | None = None
    small_input_stem: bool = False
    registered: bool = True

    @property
    def arch(self) -> str:
        """The timm architecture to build (the entry's ``timm_name``, else its ``name``)."""
        return self.timm_name or self.name


@functools.cache
def _load_entries(files: tuple[Path, ...]) -> dict[str, BackboneEntry]:
    entries: dict[str, BackboneEntry] = {}
    for path in files:
        entry = from_mapping(BackboneEntry, load_toml(path), str(path))
        check_identifier(entry.name, "backbone name", f"{path}: field 'name'")  # it names a results folder
        if entry.name in entries:
            raise ConfigError(f"{path}: backbone {entry.name!r} is already registered")
        if not timm.is_model(entry.arch):  # a lookup: list_models() sorts ~1,300 names per call
            raise ConfigError(f"{path}: field 'timm_name' {entry.arch!r} is not a timm model")
        entries[entry.name] = entry
    return entries


def _entries() -> dict[str, BackboneEntry]:
    """The shipped entries and ``BENCH_HOME``'s (a user file replaces the shipped one of its name)."""
    return _load_entries(tuple(registry_files("backbones").values()))


def list_backbones() -> list[BackboneEntry]:
    return list(_entries().values())


def get_backbone(name: str) -> BackboneEntry:
    """The registered entry for ``name``, or an ad-hoc entry for any other timm model name."""
    entries = _entries()
    if name in entries:
        return entries[name]
    if timm.is_model(name):
        return BackboneEntry(name=name, title=name, registered=False)
    close = difflib.get_close_matches(name, sorted({*entries, *timm.list_models()}), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `bench list backbones`"
    raise ConfigError(f"unknown backbone {name!r} (neither registered nor a timm model){hint}")


def create_backbone(
    backbone: str | BackboneEntry,
    num_classes: int,
    pretrained: bool = False,
    weights_file: str | Path | None = None,
    drop_rate: float = 0.0,
) -> tuple[nn.Module, dict]:
    """Build ``backbone`` (an entry already looked up, or its name) with a ``num_classes`` head; returns the model
    and its weights' provenance.

    Pretrained weights are loaded into the architecture's own 1000-class model first and the head is
    replaced afterwards with ``reset_classifier``, so the loaded tensors are checked strictly against
    the layout they were saved for. ``drop_rate`` is timm's dropout before the classifier (no parameters,
    so it changes no weight's layout).
    """
    entry = get_backbone(backbone) if isinstance(backbone, str) else backbone
    name = entry.name
    if entry.small_input_stem and pretrained:
        raise ConfigError(
            f"backbone {name!r} replaces the ImageNet stem (small_input_stem), so no ImageNet weights fit it: "
            "use a protocol that trains from scratch"
        )
    if not pretrained:
        return build_model(entry.arch, num_classes, entry.small_input_stem, name, drop_rate), {"source": "random-init"}
    from bench.models.weights import load_pretrained

    model = timm.create_model(entry.arch, pretrained=False, drop_rate=drop_rate)
    provenance = load_pretrained(model, entry.arch, weights_file)
    model.reset_classifier(num_classes)
    return model, provenance


def build_model(
    arch: str, num_classes: int, small_input_stem: bool = False, name: str | None = None, drop_rate: float = 0.0
) -> nn.Module:
    """A randomly initialised timm ``arch`` with a ``num_classes`` head, in the module layout an entry asks for.

    The one place a module's layout is decided, so a kept model is rebuilt (:mod:`bench.models.kept`) exactly as
    it was trained, from the record alone (``drop_rate`` adds no parameter and does nothing in eval mode).
    """
    model = timm.create_model(arch, num_classes=num_classes, drop_rate=drop_rate)
    if small_input_stem:
        replace_stem(model, name or arch)
    return model


def replace_stem(model: nn.Module, name: str) -> None:
    """Swap a ResNet-style ImageNet stem (7x7 conv, stride 2, then a stride-2 max-pool) for one 3x3 conv of stride 1.

    The ImageNet stem shrinks a 28 px image to 7 px before the first residual stage; the CIFAR-style stem
    keeps all 28, which is how MedMNIST v2 built its "ResNet-18 (28)" baseline (Yang et al. 2023, after
    kuangliu/pytorch-cifar). It costs 16x the MACs at the same input size. The rest of the timm model, its
    ``group_matcher`` and ``reset_classifier`` included, is untouched.
    """
    conv, pool = getattr(model, "conv1", None), getattr(model, "maxpool", None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(pool, nn.Module):
        raise ConfigError(
            f"backbone {name!r}: small_input_stem needs a ResNet-style model with 'conv1' and 'maxpool' "
            f"(timm {type(model).__name__} has none)"
        )
    model.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()


def min_input_size(entry: BackboneEntry) -> int:
    """The smallest square input the architecture accepts (declared, or probed for unregistered names)."""
    if entry.min_input_size is not None:
        return entry.min_input_size
    return probe_min_input_size(entry.arch)


@functools.cache
def probe_min_input_size(arch: str, start: int = 8, stop: int = 512) -> int:
    """Smallest side in [start, stop] that a forward pass accepts (acceptance is monotone in the side).

    Sides double from ``start`` until one is accepted, then a binary search runs between the last refused
    and the first accepted: most minimums are under 64 px, so the probe's forward passes stay small (a
    first pass at ``stop`` cost most of a second on a CPU, for every unregistered name a sweep plans).
    """
    model = timm.create_model(arch, num_classes=2).eval()

    def accepts(size: int) -> bool:
        try:
            with torch.inference_mode():
                model(torch.zeros(1, 3, size, size))
            return True
        except RuntimeError:
            return False

    refused, side = start - 1, start
    while not accepts(side):
        if side == stop:
            raise ConfigError(f"backbone {arch!r} does not accept a {stop}x{stop} input")
        refused, side = side, min(2 * side, stop)
    lo, hi = refused + 1, side
    while lo < hi:
        mid = (lo + hi) // 2
        if accepts(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def resolve_resolution(entry: BackboneEntry, requested: int, policy: ResolutionPolicy = "upsize") -> int:
    """The resolution a run actually uses: ``requested``, or the backbone's minimum under ``upsize``.

    Upsizing keeps "every backbone runs on every dataset" true at MedMNIST's 28 px; the effective size
    is recorded with the run. ``refuse`` is for users who want the resolution held fixed.
    """
    minimum = min_input_size(entry)
    if requested >= minimum:
        return requested
    if policy == "refuse":
        raise ConfigError(
            f"backbone {entry.name!r} needs inputs of at least {minimum}x{minimum}, got {requested}: "
            f"pass --resolution {minimum} or --resolution-policy upsize"
        )
    return minimum


def model_stats(model: nn.Module, resolution: int) -> dict[str, float]:
    """Parameter count and GMACs of one image at ``resolution`` (FLOPs counted by torch / 2)."""
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 3, resolution, resolution))
    model.train(was_training)
    return {"params": params, "gmacs": counter.get_total_flops() / 2 / 1e9}
