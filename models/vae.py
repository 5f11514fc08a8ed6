"""The Variational AutoEncoder of Kingma & Welling (2013), as in the seed.

Diagonal-Gaussian encoder q(z|x) with mean and log-variance heads, standard-normal prior,
Bernoulli decoder p(x|z) on binarized data (a Gaussian with a learned scalar variance on
continuous data), the reparameterization trick, and the closed-form KL of the paper's
Appendix B: -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.nn import adam, build_decoder, build_encoder, gaussian_kl
from genbench.observation import observation_log_prob, observation_model


@dataclass(frozen=True)
class VAEConfig:
    hidden: tuple[int, ...] = (400,)  # MLP hidden sizes (28x28); 64x64 uses the conv stack
    latent_dim: int = 20
    activation: str = "relu"
    lr: float = 1e-3



@register_model("vae")
class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2013): Gaussian q(z|x), N(0, I) prior."""

    Config = VAEConfig
    # Kingma & Welling used 500 hidden units on MNIST; the quick preset the seed's 400-20.
    presets = {
        "smoke": {"hidden": (64,), "latent_dim": 8},
        "quick": {"hidden": (400,), "latent_dim": 20},
        "paper": {"hidden": (500,), "latent_dim": 20, "activation": "tanh"},
    }

    def __init__(self, config: VAEConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.encoder = build_encoder(info.shape, config.hidden, 2 * config.latent_dim,
                                     config.activation)
        self.decoder = build_decoder(info.shape, tuple(reversed(config.hidden)),
                                     config.latent_dim, config.activation)
        # one learned scalar std for the Gaussian observation model (continuous data)
        self.log_std = nn.Parameter(torch.tensor(-1.0), requires_grad=info.observation == "gaussian")
        self.register_buffer("zero", torch.zeros(config.latent_dim))

    # -- capabilities -----------------------------------------------------------------
    def prior(self) -> Distribution:
        return Independent(Normal(self.zero, torch.ones_like(self.zero)), 1)

    def encode(self, x: torch.Tensor) -> Distribution:
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return Independent(Normal(mu, (0.5 * logvar).exp()), 1)

    def decode(self, z: torch.Tensor) -> Distribution:
        return observation_model(self.info.observation, self.decoder(z), self.log_std)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self.zero.device)
        return self.generate(z)

    # -- training ---------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"vae": adam(self.parameters(), lr=self.config.lr)}

    def loss_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_q[log p(x|z)] with one reparameterized draw, KL(q || p)) per image."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterization trick
        recon = observation_log_prob(self.info.observation, self.decoder(z), x, self.log_std)
        return recon, gaussian_kl(mu, logvar)

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]
                      ) -> dict[str, torch.Tensor]:
        recon, kl = self.loss_terms(batch.x)
        elbo = (recon - kl).mean()
        opt = optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        (-elbo).backward()
        opt.step()
        return {"loss": -elbo.detach(), "recon": recon.mean().detach(), "kl": kl.mean().detach()}
