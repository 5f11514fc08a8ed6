"""Network building blocks shared by the model plugins (no model lives here).

Two shapes: an MLP for small images (28x28, flattened) and the DCGAN-style convolutional
stack for 64x64 RGB (Radford et al. 2016), which CelebA models share.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus,
}


def activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], act: str = "relu", *, final_act: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_act:
            layers.append(activation(act))
    return nn.Sequential(*layers)


def is_conv_shape(shape: tuple[int, int, int]) -> bool:
    """64x64 images get the convolutional stack; anything smaller an MLP."""
    return shape[1] == 64 and shape[2] == 64


class ConvEncoder64(nn.Module):
    """(N, C, 64, 64) -> (N, out_features): four stride-2 convolutions, as DCGAN's D."""

    def __init__(self, channels: int, out_features: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2),  # 32x32
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),  # 16x16
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),  # 8x8
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1), nn.BatchNorm2d(8 * w), nn.LeakyReLU(0.2),  # 4x4
            nn.Flatten(), nn.Linear(8 * w * 16, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder64(nn.Module):
    """(N, latent) -> (N, C, 64, 64) logits: DCGAN's generator with transposed convolutions."""

    def __init__(self, latent_dim: int, channels: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Unflatten(1, (latent_dim, 1, 1)),
            nn.ConvTranspose2d(latent_dim, 8 * w, 4, 1, 0), nn.BatchNorm2d(8 * w), nn.ReLU(),  # 4
            nn.ConvTranspose2d(8 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.ReLU(),  # 8
            nn.ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(),  # 16
            nn.ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),  # 32
            nn.ConvTranspose2d(w, channels, 4, 2, 1),  # 64
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def build_encoder(shape: tuple[int, int, int], hidden: Sequence[int], out_features: int,
                  act: str) -> nn.Module:
    """x (N, C, H, W) -> (N, out_features), MLP or convolutional by image size."""
    c, h, w = shape
    if is_conv_shape(shape):
        return ConvEncoder64(c, out_features)
    return nn.Sequential(nn.Flatten(), mlp([c * h * w, *hidden, out_features], act))


def build_decoder(shape: tuple[int, int, int], hidden: Sequence[int], latent_dim: int,
                  act: str) -> nn.Module:
    """z (N, latent) -> logits (N, C, H, W), MLP or convolutional by image size."""
    c, h, w = shape
    if is_conv_shape(shape):
        return ConvDecoder64(latent_dim, c)
    return nn.Sequential(mlp([latent_dim, *hidden, c * h * w], act), nn.Unflatten(1, shape))
