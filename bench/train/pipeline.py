"""From stored uint8 images to the float batches a model takes: device copy, normalisation, augmentation.

Images stay uint8 tensors in memory; each batch is converted, augmented and normalised as a batch, so the
per-step cost is the model's, not Python's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bench.protocol.spec import Augment


class BatchPipeline:
    """uint8 images -> normalised float batches for a model, with optional batched augmentation.

    Single-channel images are expanded to three channels as a view, so grayscale X-rays feed RGB
    backbones without a stored copy. Host batches bound for a GPU are pinned first (``pin_memory``), so
    the copy is asynchronous and the host does not wait for the device.
    """

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        device: torch.device,
        channels_last: bool = False,
        pin_memory: bool = False,
    ):
        self.device = device
        self.channels_last = channels_last
        self.pin_memory = pin_memory
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255.0
        self.inv_std = 1.0 / (torch.tensor(std, device=device).view(1, -1, 1, 1) * 255.0)

    def to_device(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.pin_memory and tensor.device.type == "cpu":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def __call__(
        self, images: torch.Tensor, augment: Augment | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        x = self.to_device(images)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x.float() - self.mean) * self.inv_std
        if augment is not None and augment.enabled:
            x = augment_batch(x, augment, generator)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def augment_batch(x: torch.Tensor, aug: Augment, gen: torch.Generator | None) -> torch.Tensor:
    """Random flips, rotation and zoom for a whole batch with one ``affine_grid``/``grid_sample``.

    With flips alone the images are mirrored exactly instead, which is cheaper than resampling; the random
    draws are the same either way, so the shortcut changes the cost, not which images flip. The draws are
    made on the host (the generator is checkpointed) and reach the device in one copy that does not wait.
    """
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=gen)

    angle = torch.deg2rad(uniform(-aug.rotation, aug.rotation))
    scale = uniform(1 - aug.zoom, 1 + aug.zoom)
    sx = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if aug.hflip else torch.ones(n)
    sy = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0) if aug.vflip else torch.ones(n)
    if not (aug.rotation or aug.zoom):
        return _flip(x, sx, sy)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * sx, -sin * sy, torch.zeros(n)], 1), torch.stack([sin * sx, cos * sy, torch.zeros(n)], 1)],
        1,
    ).to(x.device, x.dtype, non_blocking=True)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _flip(x: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images whose ``sx`` is -1 and upside down those whose ``sy`` is -1 (host tensors)."""
    for sign, dim in ((sx, -1), (sy, -2)):
        flipped = sign < 0
        if flipped.any():
            x = torch.where(flipped.view(-1, 1, 1, 1).to(x.device, non_blocking=True), x.flip(dim), x)
    return x
