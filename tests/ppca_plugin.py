"""Probabilistic PCA (Tipping & Bishop 1999) as a genbench plugin with an exact likelihood.

    z ~ N(0, I_d),   x | z ~ N(W z + b, s^2 I_P),   so   x ~ N(b, W W^T + s^2 I_P).

It has everything the likelihood estimators need and a closed form for each of them: its
own Gaussian decoder p(x|z), its exact posterior as the encoder q(z|x) = p(z|x), and the
exact log p(x) through ``torch.distributions.MultivariateNormal``. ``fit`` is the closed-form
maximum-likelihood solution (Tipping & Bishop 1999, eq. 7-8), so on its own training data
``s`` is the maximum-likelihood noise level; ``training_step`` climbs the same exact
log-likelihood by gradient for the runner.

Loaded as a plugin (``genbench run ppca --plugins tests``) or imported by the tests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from genbench import register_model
from genbench.contract import DataInfo


@dataclass(frozen=True)
class PPCAConfig:
    latent_dim: int = 5
    lr: float = 1e-2


@register_model("ppca")
class PPCA(nn.Module):
    """Probabilistic PCA: linear-Gaussian decoder, exact posterior encoder, exact log p(x)."""

    Config = PPCAConfig

    def __init__(self, config: PPCAConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        p, d = math.prod(info.shape), config.latent_dim
        gen = torch.Generator().manual_seed(0)
        self.W = nn.Parameter(0.1 * torch.randn(p, d, generator=gen))
        self.b = nn.Parameter(torch.full((p,), 0.5))
        self.log_s = nn.Parameter(torch.tensor(math.log(0.3)))
        self.register_buffer("zero", torch.zeros(d))

    @property
    def s(self) -> torch.Tensor:
        return self.log_s.exp()

    # -- capabilities -----------------------------------------------------------------
    def prior(self) -> Distribution:
        return Independent(Normal(self.zero, torch.ones_like(self.zero)), 1)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.W.T + self.b).view(-1, *self.info.shape)

    def decode(self, z: torch.Tensor) -> Distribution:
        mean = self.generate(z)
        return Independent(Normal(mean, self.s.expand_as(mean)), 3)

    def encode(self, x: torch.Tensor) -> Distribution:
        """The exact posterior N(M^-1 W^T (x - b), s^2 M^-1), M = W^T W + s^2 I."""
        d = self.W.shape[1]
        m = self.W.T @ self.W + self.s**2 * torch.eye(d, dtype=self.W.dtype, device=self.W.device)
        m_inv = torch.linalg.inv(m)
        mean = (x.flatten(1) - self.b) @ self.W @ m_inv.T
        cov = self.s**2 * m_inv
        return MultivariateNormal(mean, covariance_matrix=0.5 * (cov + cov.T))

    def marginal(self) -> MultivariateNormal:
        p = self.W.shape[0]
        cov = self.W @ self.W.T + self.s**2 * torch.eye(p, dtype=self.W.dtype, device=self.W.device)
        return MultivariateNormal(self.b, covariance_matrix=cov)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log p(x) per image (N,), in nats."""
        return self.marginal().log_prob(x.flatten(1))

    # -- training ---------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, x: torch.Tensor) -> None:
        """Closed-form maximum likelihood (Tipping & Bishop 1999): b the mean, s^2 the mean of
        the discarded covariance eigenvalues, W = U_d (L_d - s^2 I)^(1/2)."""
        xf = x.flatten(1).double()
        mu = xf.mean(0)
        cov = (xf - mu).T @ (xf - mu) / xf.shape[0]
        evals, evecs = torch.linalg.eigh(cov)  # ascending
        evals, evecs = evals.flip(0).clamp_min(0), evecs.flip(1)
        d = self.W.shape[1]
        s2 = evals[d:].mean()
        self.W.copy_((evecs[:, :d] * (evals[:d] - s2).clamp_min(0).sqrt()).to(self.W.dtype))
        self.b.copy_(mu.to(self.b.dtype))
        self.log_s.fill_(0.5 * math.log(float(s2)))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.config.lr)

    def training_step(self, batch, *optimizers) -> dict[str, torch.Tensor]:
        loss = -self.log_px(batch.x).mean() / math.prod(self.info.shape)
        return {"loss": loss}

    def on_train_end(self, train_x: torch.Tensor) -> None:
        self.fit(train_x)
