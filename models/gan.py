"""The Generative Adversarial Network of Goodfellow et al. (2014): MLP generator and discriminator.

G maps noise z ~ N(0, I) through ReLU layers to a sigmoid image; D is an MLP (maxout units
with dropout in the paper, LeakyReLU here by default) giving the logit of "x is real". D
minimizes -[log D(x) + log(1 - D(G(z)))]; G minimizes the non-saturating -log D(G(z)) of
the paper's Section 3. Each network is stepped by its own Adam optimizer on its own loss.

There is no observation model (no ``decode``): the likelihood evaluator puts a Gaussian
around ``generate(z)`` (Wu et al. 2017). Divergence: see :func:`genbench.kit.adversarial.check_discriminator`;
``--set lr=1e30`` reproducibly blows a run up (non-finite losses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.kit.adversarial import AdversarialHooks, adversarial_step
from genbench.kit.nn import Maxout, activation
from genbench.settings import one_of, positive, probability


@dataclass(frozen=True)
class GANConfig:
    latent_dim: int = positive(100)
    g_hidden: tuple[int, ...] = positive((256, 512))
    g_batchnorm: bool = True  # BatchNorm on G's hidden layers (not in the paper; fights collapse)
    d_hidden: tuple[int, ...] = positive((512, 256))
    d_activation: str = one_of("leaky_relu", ("leaky_relu", "maxout", "relu"))  # maxout: the paper
    maxout_pieces: int = positive(5)
    d_dropout: float = probability(0.5)  # on D's hidden layers (the paper used dropout in D)
    lr: float = positive(2e-4)  # both networks; 1e30 makes training diverge on purpose
    beta1: float = probability(0.5)
    certainty: float = probability(0.99)  # D certain on a batch: mean D(x) above, mean D(G(z)) below 1-it


def generator_mlp(latent_dim: int, hidden: tuple[int, ...], shape: tuple[int, int, int],
                  batchnorm: bool) -> nn.Module:
    """z (N, latent) -> logits (N, C, H, W): ReLU layers, as the paper's MNIST generator."""
    sizes = [latent_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        layers += [nn.Linear(a, b), *([nn.BatchNorm1d(b)] if batchnorm else []), nn.ReLU()]
    c, h, w = shape
    return nn.Sequential(*layers, nn.Linear(sizes[-1], c * h * w), nn.Unflatten(1, shape))


def discriminator_mlp(shape: tuple[int, int, int], config: GANConfig) -> nn.Module:
    """x (N, C, H, W) -> logit (N,): hidden layers with dropout, then one linear unit."""
    c, h, w = shape
    sizes = [c * h * w, *config.d_hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:], strict=False):
        if config.d_activation == "maxout":
            layers.append(Maxout(a, b, config.maxout_pieces))
        else:
            layers += [nn.Linear(a, b), activation(config.d_activation)]
        layers.append(nn.Dropout(config.d_dropout))
    return nn.Sequential(*layers, nn.Linear(sizes[-1], 1), nn.Flatten(0))


@register_model("gan")
class GAN(AdversarialHooks, nn.Module):
    """Generative adversarial network (Goodfellow et al. 2014): MLP G and D, N(0, I) prior."""

    Config = GANConfig
    presets = {
        "smoke": {"latent_dim": 16, "g_hidden": (64,), "d_hidden": (64,)},
        # 256-512 G, 512-256 LeakyReLU D: longer runs on small sets drift toward few modes
        "quick": {"epochs": 30, "batch_size": 64},
        # the paper's MNIST sizes: 100-d noise, 1200-1200 ReLU G; maxout D (240x5, 240x5)
        "paper": {"g_hidden": (1200, 1200), "d_hidden": (240, 240), "d_activation": "maxout",
                  "maxout_pieces": 5, "d_dropout": 0.5, "g_batchnorm": False},
    }

    def __init__(self, config: GANConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.generator = generator_mlp(config.latent_dim, config.g_hidden, info.shape,
                                       config.g_batchnorm)
        self.discriminator = discriminator_mlp(info.shape, config)

    # -- capabilities (prior, optimizers, divergence check: AdversarialHooks) --------
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.generator(z))

    # -- training ---------------------------------------------------------------------
    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]
                      ) -> dict[str, torch.Tensor]:
        """One D step on a real batch and as many fakes, then one G step (k = 1, as the paper)."""
        z = torch.randn(batch.x.shape[0], self.config.latent_dim, device=batch.x.device)
        fake = self.generate(z)
        return adversarial_step(self.discriminator, batch.x, fake, optimizers,
                                self.config.certainty)

