"""The Variational AutoEncoder of Kingma & Welling (2013).

Diagonal-Gaussian encoder q(z|x) with mean and log-variance heads, standard-normal prior,
Bernoulli decoder p(x|z) on binarized data (a Gaussian with a learned scalar variance on
continuous data), the reparameterization trick, and the closed-form KL of the paper's
Appendix B. Training maximizes the ELBO, a lower bound on log p(x):

    log p(x) >= E_q(z|x)[log p(x|z)] - KL(q(z|x) || N(0, I)).

``sample`` is derived by genbench from ``prior`` and ``generate``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.kit.latent import gaussian_kl, reparameterize, split_gaussian, standard_normal_prior
from genbench.kit.nn import AUTOENCODER_PRESETS, AutoencoderConfig, adam, build_decoder, build_encoder
from genbench.kit.observation import learned_log_std, observation_log_prob, observation_model


@register_model("vae")
class VAE(nn.Module):
    """Variational autoencoder (Kingma & Welling 2013): Gaussian q(z|x), N(0, I) prior."""

    Config = AutoencoderConfig  # hidden, latent_dim, activation, lr
    presets = AUTOENCODER_PRESETS

    def __init__(self, config: AutoencoderConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.encoder = build_encoder(info.shape, config.hidden, 2 * config.latent_dim,
                                     config.activation)  # x -> [mu, log sigma^2]
        self.decoder = build_decoder(info.shape, tuple(reversed(config.hidden)),
                                     config.latent_dim, config.activation)  # z -> logits
        self.log_std = learned_log_std(info)  # the Gaussian observation model's (continuous data)

    def prior(self) -> Distribution:
        return standard_normal_prior(self.config.latent_dim, like=self.log_std)

    def encode(self, x: torch.Tensor) -> Distribution:
        return split_gaussian(self.encoder(x))

    def decode(self, z: torch.Tensor) -> Distribution:
        return observation_model(self.info.observation, self.decoder(z), self.log_std)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr)

    def loss_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_q[log p(x|z)] with one reparameterized draw, KL(q || p)) per image."""
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        z = reparameterize(mu, logvar)
        recon = observation_log_prob(self.info.observation, self.decoder(z), x, self.log_std)
        return recon, gaussian_kl(mu, logvar)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        recon, kl = self.loss_terms(batch.x)
        elbo = (recon - kl).mean()
        return {"loss": -elbo, "recon": recon.mean(), "kl": kl.mean()}
