"""The adversarial models' (GAN, DCGAN, VAE-GAN, LAPGAN) training kit, in one place: the
losses, the D-then-G step and its statistics, the divergence check, one Adam per network,
and the contract hooks that tie them to a model.

They step their own optimizers (one Adam per network, each on its own loss), draw their noise
from N(0, I) and stop a run whose discriminator has won outright. A class lists
:class:`AdversarialHooks` first among its bases to get those three contract hooks, and calls
:func:`adversarial_step` from its ``training_step``. (These helpers were in
:mod:`genbench.kit.nn`; importing them from there still works.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from genbench.errors import Diverged
from genbench.kit.latent import standard_normal_prior
from genbench.kit.nn import adam


# -- the losses, statistics and divergence check of a GAN step -------------------------------
def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-[log D(x) + log(1 - D(G(z)))], the discriminator's side of Goodfellow et al.'s game."""
    real = F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
    fake = F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    return real + fake


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-log D(G(z)): the non-saturating generator loss (Goodfellow et al. 2014, Sec. 3),
    whose gradient does not vanish early in training when D rejects every sample."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def discriminator_stats(real_logits: torch.Tensor, fake_logits: torch.Tensor,
                        certainty: float) -> dict[str, torch.Tensor]:
    """Mean D(x), mean D(G(z)) as probabilities, and whether D was certain on this batch
    (mean D(x) > certainty and mean D(G(z)) < 1 - certainty), all detached."""
    d_real = torch.sigmoid(real_logits.detach()).mean()
    d_fake = torch.sigmoid(fake_logits.detach()).mean()
    certain = ((d_real > certainty) & (d_fake < 1 - certainty)).float()
    return {"d_real": d_real, "d_fake": d_fake, "d_certain": certain}


def check_discriminator(epoch: int, stats: dict[str, float]) -> None:
    """Raise Diverged when D was certain on every batch of the epoch.

    ``stats["d_certain"]`` is the epoch mean of the per-batch flag from
    :func:`discriminator_stats`, so 1.0 means D told every real batch from every fake
    one with confidence: G gets no useful gradient and will not recover.
    """
    if stats.get("d_certain", 0.0) >= 1.0:
        raise Diverged(f"discriminator certain for all of epoch {epoch} (mean D(x) = "
                       f"{stats.get('d_real', float('nan')):.4f}, mean D(G(z)) = "
                       f"{stats.get('d_fake', float('nan')):.4f}): the generator has collapsed")


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn off ``module``'s parameter gradients inside the block (the G step of a GAN
    backpropagates through D without computing, or touching, D's gradients)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def adversarial_step(discriminator: nn.Module, real: torch.Tensor,
                     fake: torch.Tensor, optimizers: dict[str, torch.optim.Optimizer],
                     certainty: float) -> dict[str, torch.Tensor]:
    """Step D on -[log D(x) + log(1 - D(fake))], then G on -log D(fake) (D frozen).

    ``fake`` must still carry G's graph; D sees it detached in its own step.
    """
    real_logits = discriminator(real)
    fake_logits = discriminator(fake.detach())
    d_loss = discriminator_loss(real_logits, fake_logits)
    opt_d = optimizers["discriminator"]
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    with frozen(discriminator):  # G's loss must not leave gradients on D
        g_loss = generator_loss(discriminator(fake))
    opt_g = optimizers["generator"]
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach(),
            **discriminator_stats(real_logits, fake_logits, certainty)}




def adversarial_optimizers(discriminator: nn.Module, generator: nn.Module, lr: float,
                           beta1: float) -> dict[str, torch.optim.Optimizer]:
    """One Adam per network (Radford et al. 2016: beta1 0.5), so each is stepped only by
    its own loss."""
    betas = (beta1, 0.999)
    return {"discriminator": adam(discriminator.parameters(), lr=lr, betas=betas),
            "generator": adam(generator.parameters(), lr=lr, betas=betas)}


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
