"""Batches: grayscale to RGB, normalisation, memory format, and batched augmentation (flips exact)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from bench.protocol.spec import Augment
from bench.train.pipeline import BatchPipeline, augment_batch

CPU = torch.device("cpu")
PIPE = BatchPipeline((0.5, 0.5, 0.5), (0.5, 0.5, 0.5), CPU)


def test_grayscale_feeds_rgb_models():
    x = PIPE(torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8))
    assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 2])


def test_normalisation():
    x = PIPE(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert torch.allclose(x, torch.ones_like(x))


@pytest.mark.parametrize(
    "aug",
    [
        Augment(hflip=True),
        Augment(rotation=30),
        Augment(zoom=0.2),
        Augment(rotation=10, hflip=True, vflip=True, zoom=0.1),
    ],
)
def test_augment_keeps_shape_and_changes_pixels(aug):
    x = torch.randn(8, 3, 16, 16)
    y = augment_batch(x, aug, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and not torch.equal(x, y)


def test_hflip_only_mirrors_exactly_or_not_at_all():
    x = torch.randn(16, 3, 8, 8)
    y = augment_batch(x, Augment(hflip=True), torch.Generator().manual_seed(1))
    for a, b in zip(x, y, strict=True):
        assert torch.allclose(b, a, atol=1e-5) or torch.allclose(b, a.flip(-1), atol=1e-5)


def test_pipeline_channels_last():
    pipe = BatchPipeline((0.5,) * 3, (0.5,) * 3, CPU, channels_last=True)
    x = pipe(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), Augment(rotation=10), torch.Generator().manual_seed(0))
    assert x.is_contiguous(memory_format=torch.channels_last) and x.shape == (2, 3, 8, 8)


@pytest.mark.parametrize("aug", [Augment(hflip=True), Augment(vflip=True), Augment(hflip=True, vflip=True)])
def test_flip_only_shortcut_matches_resampling(aug):
    """Flips without rotation/zoom skip grid_sample; the same draws through grid_sample give the same images."""
    x = torch.randn(32, 3, 12, 12)
    fast = augment_batch(x, aug, torch.Generator().manual_seed(4))
    # a rotation too small to move a pixel forces the grid_sample path with the same random stream
    resampled = augment_batch(x, dataclasses.replace(aug, rotation=1e-30), torch.Generator().manual_seed(4))
    assert torch.allclose(fast, resampled, atol=1e-5) and not torch.equal(fast, x)
