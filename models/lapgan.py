"""LAPGAN (Denton, Chintala, Szlam & Fergus 2015): a Laplacian pyramid of GANs.

The image is built coarse to fine. A GAN makes the coarsest image I_0 (7x7 for 28x28 data,
8x8 for 64x64); at each finer level k a conditional GAN makes the band-pass residual h_k
given the upsampled coarser image l_k = u(I_{k-1}), and I_k = l_k + h_k:

    28x28: 7 -> 14 -> 28        64x64: 8 -> 16 -> 32 -> 64

The pyramid of a real image: I_k = d(I_{k+1}) (2x2 average pooling), h_k = I_k - u(I_{k-1})
(bilinear upsampling), so summing back is exact by construction (:func:`reconstruct`).

Training, as the paper did: each level is its own GAN, trained on the real pyramid (level k's
generator and discriminator see the *real* upsampled coarse image, not a generated one), so the
levels are independent and all are updated in each step of one loop. D_k judges the residual
together with its conditioning image, [h_k; l_k]. Non-saturating losses, Adam(2e-4, beta1 0.5)
as DCGAN, one optimizer pair per level (``manual_optimization``).

Noise: z = [z_0 | z_1 | ... ] with an N(0, I) prior over all of it, so ``generate(z)`` is a
deterministic function of one Gaussian vector and AIS, BDMC, the observation model and every
sample metric apply unchanged. The paper feeds a noise *plane* to each conditional level;
here each level gets a ``level_noise``-dimensional vector mapped linearly to that plane (it
keeps z small enough for AIS). Images are in [-1, 1] inside, [0, 1] out of ``generate``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.errors import Diverged, GenbenchError
from genbench.kit.adversarial import adversarial_optimizers, adversarial_step
from genbench.kit.latent import standard_normal_prior
from genbench.settings import positive, probability

COARSEST = 8  # halve until the image is at most this wide


# -- the Laplacian pyramid ------------------------------------------------------------------
def level_sizes(size: int) -> list[int]:
    """Image widths coarse to fine: 28 -> [7, 14, 28], 64 -> [8, 16, 32, 64]."""
    sizes = [size]
    while sizes[0] > COARSEST:
        if sizes[0] % 2:
            raise GenbenchError(f"lapgan halves the image down to {COARSEST} pixels; "
                                f"{size}x{size} does not halve evenly")
        sizes.insert(0, sizes[0] // 2)
    return sizes


def downsample(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2)


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


def laplacian_pyramid(x: torch.Tensor, levels: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(coarsest image, residuals coarse to fine) of x (N, C, H, W) over ``levels`` levels."""
    gaussian = [x]
    for _ in range(levels - 1):
        gaussian.insert(0, downsample(gaussian[0]))
    residuals = [fine - upsample(coarse) for coarse, fine in zip(gaussian[:-1], gaussian[1:], strict=True)]
    return gaussian[0], residuals


def reconstruct(coarse: torch.Tensor, residuals: list[torch.Tensor]) -> torch.Tensor:
    """I_k = u(I_{k-1}) + h_k, coarse to fine."""
    image = coarse
    for h in residuals:
        image = upsample(image) + h
    return image


# -- networks -------------------------------------------------------------------------------
class ResidualGenerator(nn.Module):
    """G_k(z_k, l_k): the noise vector as one extra plane beside l_k, three 3x3 convolutions,
    a linear output (a residual is signed)."""

    def __init__(self, channels: int, size: int, noise: int, width: int) -> None:
        super().__init__()
        self.size = size
        self.plane = nn.Linear(noise, size * size)
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def forward(self, z: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        plane = self.plane(z).view(-1, 1, self.size, self.size)  # (N, 1, H, W)
        return self.net(torch.cat([low, plane], 1))


def residual_discriminator(channels: int, size: int, width: int) -> nn.Module:
    """D_k([h; l]) -> logit: two stride-2 convolutions then a linear layer."""
    return nn.Sequential(
        nn.Conv2d(2 * channels, width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(2 * width * (size // 4) ** 2, 1),
    )


@dataclass(frozen=True)
class LAPGANConfig:
    latent_dim: int = positive(32)  # z_0 of the coarsest GAN
    level_noise: int = positive(16)  # z_k of each conditional level
    hidden: int = positive(256)  # the coarsest GAN's MLP width
    width: int = positive(32)  # the conditional levels' convolution channels
    lr: float = positive(2e-4)
    beta1: float = probability(0.5)
    certainty: float = probability(0.99)  # a level whose D is this sure on every batch of an epoch diverged


@register_model("lapgan")
class LAPGAN(nn.Module):
    """Laplacian pyramid of GANs (Denton et al. 2015); z = all levels' noise, N(0, I)."""

    Config = LAPGANConfig
    manual_optimization = True
    presets = {
        "smoke": {"hidden": 32, "width": 8, "latent_dim": 8, "level_noise": 4},
        "quick": {"epochs": 25, "batch_size": 64},
        "paper": {"hidden": 1200, "width": 128, "latent_dim": 100, "batch_size": 128},
    }

    def __init__(self, config: LAPGANConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        c, h, w = info.shape
        if h != w:
            raise GenbenchError(f"lapgan takes square images, not {h}x{w}")
        self.sizes = level_sizes(h)
        s0 = self.sizes[0]
        # BatchNorm in the coarse generator: without it the 7x7 GAN collapsed to one image
        # on mnist-5k (sample std across z 0.04 against the data's 0.26; with it 0.23).
        # Dropout in the coarse D, as the paper's discriminators.
        self.coarse_g = nn.Sequential(
            nn.Linear(config.latent_dim, config.hidden), nn.BatchNorm1d(config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, config.hidden), nn.BatchNorm1d(config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, c * s0 * s0), nn.Unflatten(1, (c, s0, s0)))
        self.coarse_d = nn.Sequential(
            nn.Flatten(), nn.Linear(c * s0 * s0, config.hidden), nn.LeakyReLU(0.2),
            nn.Dropout(0.5), nn.Linear(config.hidden, 1))
        self.level_g = nn.ModuleList(ResidualGenerator(c, s, config.level_noise, config.width)
                                     for s in self.sizes[1:])
        self.level_d = nn.ModuleList(residual_discriminator(c, s, config.width)
                                     for s in self.sizes[1:])
        self.register_buffer("zero", torch.zeros(()))

    @property
    def noise_dims(self) -> list[int]:
        return [self.config.latent_dim] + [self.config.level_noise] * len(self.level_g)

    # -- capabilities -----------------------------------------------------------------
    def prior(self) -> Distribution:
        return standard_normal_prior(sum(self.noise_dims), like=self.zero)

    def levels(self, z: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(upsampled coarser image l_k, residual h_k, sum I_k) per level, coarse to fine,
        in [-1, 1] units; level 0 is (I_0, 0, I_0)."""
        parts = z.split(self.noise_dims, dim=-1)
        image = torch.tanh(self.coarse_g(parts[0]))  # (N, C, s0, s0)
        out = [(image, torch.zeros_like(image), image)]
        for g, zk in zip(self.level_g, parts[1:], strict=True):
            low = upsample(image)
            h = g(zk, low)
            image = low + h
            out.append((low, h, image))
        return out

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return ((self.levels(z)[-1][2] + 1) / 2).clamp(0, 1)

    # -- training ---------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        pairs = [(self.coarse_d, self.coarse_g), *zip(self.level_d, self.level_g, strict=True)]
        opts = {}
        for k, (d, g) in enumerate(pairs):
            pair = adversarial_optimizers(d, g, c.lr, c.beta1)
            opts[f"d{k}"], opts[f"g{k}"] = pair["discriminator"], pair["generator"]
        return opts

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]
                      ) -> dict[str, torch.Tensor]:
        """One D and one G step at every level, each on the real pyramid of the batch."""
        real = batch.x * 2 - 1
        coarse, residuals = laplacian_pyramid(real, len(self.sizes))
        n = real.shape[0]
        stats: dict[str, torch.Tensor] = {}
        z0 = torch.randn(n, self.config.latent_dim, device=real.device)
        fake = torch.tanh(self.coarse_g(z0))
        out = adversarial_step(self.coarse_d, coarse, fake, self._pair(optimizers, 0),
                               self.config.certainty)
        stats.update({f"{k}_0": v for k, v in out.items()})
        image = coarse
        for k, (g, d, h) in enumerate(zip(self.level_g, self.level_d, residuals, strict=True), start=1):
            low = upsample(image)
            zk = torch.randn(n, self.config.level_noise, device=real.device)
            out = adversarial_step(d, torch.cat([h, low], 1), torch.cat([g(zk, low), low], 1),
                                   self._pair(optimizers, k), self.config.certainty)
            stats.update({f"{key}_{k}": v for key, v in out.items()})
            image = low + h  # the real image at this level conditions the next
        levels = len(self.sizes)
        stats["g_loss"] = sum(stats[f"g_loss_{k}"] for k in range(levels)) / levels
        stats["d_loss"] = sum(stats[f"d_loss_{k}"] for k in range(levels)) / levels
        return stats

    @staticmethod
    def _pair(optimizers: dict[str, torch.optim.Optimizer], k: int
              ) -> dict[str, torch.optim.Optimizer]:
        return {"discriminator": optimizers[f"d{k}"], "generator": optimizers[f"g{k}"]}

    def on_epoch_end(self, epoch: int, stats: dict[str, float]) -> None:
        for k in range(len(self.sizes)):
            if stats.get(f"d_certain_{k}", 0.0) >= 1.0:
                raise Diverged(f"level {k} ({self.sizes[k]}x{self.sizes[k]}): discriminator "
                               f"certain for all of epoch {epoch + 1}; its generator collapsed")
