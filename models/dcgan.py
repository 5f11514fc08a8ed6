"""DCGAN (Radford, Metz & Chintala 2016): the convolutional GAN.

Generator: transposed convolutions with BatchNorm and ReLU, tanh output. Discriminator:
strided convolutions with LeakyReLU(0.2), BatchNorm on every layer but the input one. All
weights from N(0, 0.02); Adam with lr 2e-4 and beta1 0.5 (the paper's Section 4). D works in
[-1, 1] (tanh's range), so real images are mapped there and ``generate`` maps back to [0, 1].

Two shapes: 28x28 one-channel (MNIST-like, three layers a side) and the paper's 64x64 RGB
(CelebA, four layers a side, :class:`genbench.kit.nn.ConvDecoder64`/``ConvEncoder64``).
No ``decode``: the likelihood evaluator puts a Gaussian around ``generate(z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.kit.adversarial import AdversarialHooks, adversarial_step
from genbench.kit.nn import conv_pair, dcgan_init
from genbench.settings import positive, probability


@dataclass(frozen=True)
class DCGANConfig:
    latent_dim: int = positive(100)
    width: int = positive(32)  # channels of the first D layer / last G layer (the paper's 64x64: 128)
    lr: float = positive(2e-4)  # both networks; 1e30 makes training diverge on purpose
    beta1: float = probability(0.5)
    certainty: float = probability(0.99)  # D certain on a batch: mean D(x) above, mean D(G(z)) below 1-it


@register_model("dcgan")
class DCGAN(AdversarialHooks, nn.Module):
    """Deep convolutional GAN (Radford et al. 2016): 28x28 or 64x64, N(0, I) prior."""

    Config = DCGANConfig
    presets = {
        "smoke": {"latent_dim": 16, "width": 8},
        "quick": {"epochs": 25, "batch_size": 64},
        "paper": {"width": 128, "batch_size": 128},
    }

    def __init__(self, config: DCGANConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.discriminator, self.generator = conv_pair(info.shape, config.latent_dim, 1, config.width)
        dcgan_init(self)

    # -- capabilities (prior, optimizers, divergence check: AdversarialHooks) --------
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(self.generator(z)) + 1) / 2

    # -- training ---------------------------------------------------------------------
    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]
                      ) -> dict[str, torch.Tensor]:
        """One D step (real and fake batches apart, as the paper), then one G step."""
        z = torch.randn(batch.x.shape[0], self.config.latent_dim, device=batch.x.device)
        fake = torch.tanh(self.generator(z))  # (N, C, H, W) in [-1, 1], D's scale
        real = batch.x * 2 - 1
        return adversarial_step(self.discriminator, real, fake, optimizers, self.config.certainty)
