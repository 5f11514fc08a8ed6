"""Tiny synthetic sets for tests: generated in milliseconds, no files, fully determined.

``synthetic``: 28x28 grey images of 10 classes (class k: a bright bar at a k-dependent
position and angle, plus noise), 600 images. ``synthetic-rgb``: 64x64 RGB images with 40
binary attributes (CelebA's shape), 200 images.
"""

from __future__ import annotations

import torch

from genbench.data.bundle import DataBundle, DataRequest, Split, make_bundle
from genbench.registry import register_dataset


def _bars(n: int, size: int, channels: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    r = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    angle = y.float() * torch.pi / classes
    offset = (y.float() % 3 - 1) * 0.3 + 0.05 * torch.randn(n, generator=gen)
    d = xx[None] * torch.cos(angle)[:, None, None] + yy[None] * torch.sin(angle)[:, None, None]
    img = torch.exp(-((d - offset[:, None, None]) ** 2) / 0.02)
    img = img[:, None].repeat(1, channels, 1, 1)
    if channels > 1:  # colour by class so attributes have something to see
        tint = torch.rand(classes, channels, generator=gen)[y]
        img = img * (0.3 + 0.7 * tint[:, :, None, None])
    img = img + 0.05 * torch.rand(img.shape, generator=gen)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8), y


@register_dataset("synthetic", description="600 generated 28x28 bars of 10 classes (tests)")
def load_synthetic(request: DataRequest) -> DataBundle:
    x, y = _bars(600, 28, 1, 10, seed=0)
    return make_bundle(
        request=request, name="synthetic", train=Split(x[:400], y[:400]),
        test=Split(x[500:], y[500:]), val=Split(x[400:500], y[400:500]), val_size=100,
        default_variant="dynamic", num_classes=10,
        label_names=tuple(str(i) for i in range(10)), source="generated",
    )


@register_dataset("synthetic-rgb", description="200 generated 64x64 RGB images with 40 "
                  "binary attributes, CelebA's shape (tests)")
def load_synthetic_rgb(request: DataRequest) -> DataBundle:
    x, y = _bars(200, 64, 3, 8, seed=1)
    attrs = ((y[:, None] >> torch.arange(40)[None] % 3) & 1).float()  # (N, 40) in {0, 1}
    return make_bundle(
        request=request, name="synthetic-rgb", train=Split(x[:140], attrs[:140]),
        val=Split(x[140:170], attrs[140:170]), test=Split(x[170:], attrs[170:]), val_size=30,
        default_variant="continuous", num_attributes=40,
        label_names=tuple(f"attr{i}" for i in range(40)), source="generated",
    )
