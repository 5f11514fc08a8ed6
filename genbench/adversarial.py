"""What the adversarial models (GAN, DCGAN, VAE-GAN) share beyond the losses in :mod:`genbench.nn`.

They step their own optimizers (one Adam per network, each on its own loss), draw their noise
from N(0, I) and stop a run whose discriminator has won outright. A class lists
:class:`AdversarialHooks` first among its bases to get those three contract hooks.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution

from genbench.latent import standard_normal_prior
from genbench.nn import adversarial_optimizers, check_discriminator


class AdversarialHooks:
    """Contract hooks of a GAN-like model with ``config.latent_dim``-dimensional noise."""

    manual_optimization = True  # training_step(batch, optimizers) steps D and G itself
    on_epoch_end = staticmethod(check_discriminator)  # raises Diverged when D wins outright

    def prior(self) -> Distribution:
        return standard_normal_prior(self.config.latent_dim, like=self)  # type: ignore[attr-defined]

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """One Adam per network, ``discriminator`` and ``generator`` (VAE-GAN has three)."""
        c = self.config  # type: ignore[attr-defined]
        return adversarial_optimizers(self.discriminator, self.generator,  # type: ignore[attr-defined]
                                      c.lr, c.beta1)
