"""The deterministic AutoEncoder baseline: the VAE's networks without noise or KL.

Its encoder is a point mass (a :class:`~genbench.contract.Delta`). To sample, and so to
be compared as a generator, it gets an ex-post prior: a full-covariance Gaussian fitted to
its training codes after training (as in Ghosh et al. 2020's ex-post density estimation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, MultivariateNormal

from genbench import register_model
from genbench.contract import Batch, DataInfo, Delta
from genbench.nn import adam, build_decoder, build_encoder
from genbench.observation import observation_log_prob, observation_model


@dataclass(frozen=True)
class AEConfig:
    hidden: tuple[int, ...] = (400,)
    latent_dim: int = 20
    activation: str = "relu"
    lr: float = 1e-3


@register_model("ae")
class AE(nn.Module):
    """Deterministic autoencoder with an ex-post Gaussian prior fitted to its codes."""

    Config = AEConfig
    point_encoder = True  # IWAE needs a density; AIS uses the ex-post prior instead
    presets = {
        "smoke": {"hidden": (64,), "latent_dim": 8},
        "quick": {"hidden": (400,), "latent_dim": 20},
        "paper": {"hidden": (500,), "latent_dim": 20, "activation": "tanh"},
    }

    def __init__(self, config: AEConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.encoder = build_encoder(info.shape, config.hidden, config.latent_dim,
                                     config.activation)
        self.decoder = build_decoder(info.shape, tuple(reversed(config.hidden)),
                                     config.latent_dim, config.activation)
        self.log_std = nn.Parameter(torch.tensor(-1.0), requires_grad=info.observation == "gaussian")
        d = config.latent_dim
        self.register_buffer("prior_loc", torch.zeros(d))
        self.register_buffer("prior_scale_tril", torch.eye(d))

    def prior(self) -> Distribution:
        return MultivariateNormal(self.prior_loc, scale_tril=self.prior_scale_tril)

    def encode(self, x: torch.Tensor) -> Distribution:
        return Delta(self.encoder(x))

    def decode(self, z: torch.Tensor) -> Distribution:
        return observation_model(self.info.observation, self.decoder(z), self.log_std)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(n, self.config.latent_dim, generator=generator,
                          device=self.prior_loc.device)
        return self.generate(self.prior_loc + eps @ self.prior_scale_tril.T)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"ae": adam(self.parameters(), lr=self.config.lr)}

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]
                      ) -> dict[str, torch.Tensor]:
        recon = observation_log_prob(self.info.observation, self.decoder(self.encoder(batch.x)),
                                     batch.x, self.log_std).mean()
        opt = optimizers["ae"]
        opt.zero_grad(set_to_none=True)
        (-recon).backward()
        opt.step()
        return {"loss": -recon.detach(), "recon": recon.detach()}

    @torch.no_grad()
    def on_train_end(self, train_x: torch.Tensor) -> None:
        """Fit the ex-post prior: mean and Cholesky factor of the training codes."""
        codes = torch.cat([self.encoder(x) for x in train_x.split(1024)])
        loc = codes.mean(0)
        cov = torch.cov(codes.T) + 1e-4 * torch.eye(codes.shape[1], device=codes.device)
        self.prior_loc.copy_(loc)
        self.prior_scale_tril.copy_(torch.linalg.cholesky(cov))
