"""The deterministic AutoEncoder baseline: the VAE's networks without noise or KL.

Its encoder is a point mass (a :class:`~genbench.contract.Delta`). To sample, and so to
be compared as a generator, it gets an ex-post prior: a full-covariance Gaussian fitted to
its training codes after training (as in Ghosh et al. 2020's ex-post density estimation).
genbench derives ``generate`` (the mean of ``decode``) and ``sample`` (from that prior).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, MultivariateNormal

from genbench import register_model
from genbench.contract import Batch, DataInfo, Delta
from genbench.kit.nn import AUTOENCODER_PRESETS, AutoencoderConfig, adam, build_decoder, build_encoder
from genbench.kit.observation import learned_log_std, observation_log_prob, observation_model


@register_model("ae")
class AE(nn.Module):
    """Deterministic autoencoder with an ex-post Gaussian prior fitted to its codes."""

    Config = AutoencoderConfig  # the VAE's: hidden, latent_dim, activation, lr
    point_encoder = True  # IWAE needs a density; AIS uses the ex-post prior instead
    presets = AUTOENCODER_PRESETS

    def __init__(self, config: AutoencoderConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.encoder = build_encoder(info.shape, config.hidden, config.latent_dim,
                                     config.activation)
        self.decoder = build_decoder(info.shape, tuple(reversed(config.hidden)),
                                     config.latent_dim, config.activation)
        self.log_std = learned_log_std(info)
        d = config.latent_dim
        self.register_buffer("prior_loc", torch.zeros(d))
        self.register_buffer("prior_scale_tril", torch.eye(d))

    def prior(self) -> Distribution:
        return MultivariateNormal(self.prior_loc, scale_tril=self.prior_scale_tril)

    def encode(self, x: torch.Tensor) -> Distribution:
        return Delta(self.encoder(x))

    def decode(self, z: torch.Tensor) -> Distribution:
        return observation_model(self.info.observation, self.decoder(z), self.log_std)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        recon = observation_log_prob(self.info.observation, self.decoder(self.encoder(batch.x)),
                                     batch.x, self.log_std).mean()
        return {"loss": -recon, "recon": recon}

    @torch.no_grad()
    def on_train_end(self, train_x: torch.Tensor) -> None:
        """Fit the ex-post prior: mean and Cholesky factor of the training codes."""
        codes = torch.cat([self.encoder(x) for x in train_x.split(1024)])
        loc = codes.mean(0)
        cov = torch.cov(codes.T) + 1e-4 * torch.eye(codes.shape[1], device=codes.device)
        self.prior_loc.copy_(loc)
        self.prior_scale_tril.copy_(torch.linalg.cholesky(cov))
