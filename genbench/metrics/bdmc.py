"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015; Wu et al. 2017, sec. 5).

On data simulated from the model, x ~ p(x|z*) with z* ~ p(z), z* is an exact posterior
sample of x. Forward AIS from pi_0 gives a stochastic lower bound on log p(x); AIS run in
reverse from z* gives an upper bound (the log of its weights estimates -log p(x)). The gap
between them bounds the error of forward AIS with the same settings on data like the
model's own, which is the sanity check Wu et al. report beside every AIS number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from genbench.metrics.ais import AISPath, HMCConfig, run_ais, sigmoid_schedule
from genbench.metrics.obsmodel import ObservationModel
from genbench.metrics.sampling import counter_normal, derive_seed, reparameterize


@dataclass
class BDMCResult:
    lower: torch.Tensor  # forward AIS, (n,) float64
    upper: torch.Tensor  # reverse AIS, (n,) float64
    x: torch.Tensor  # the simulated images (n, C, H, W)

    @property
    def gap(self) -> torch.Tensor:
        return self.upper - self.lower


def simulate(model: torch.nn.Module, obs: ObservationModel, n: int, shape: tuple[int, ...], *,
             seed: int, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(z* (n, D), x (n, C, H, W)): exact joint samples from p(z) p(x|z)."""
    prior = model.prior()
    device = prior.mean.device
    eps = counter_normal(seed, torch.arange(n, device=device), torch.arange(1), prior.event_shape[-1])
    z = reparameterize(prior, eps)[0]
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(seed, 1))
    return z, obs.sample(model, z, y, shape, gen)


def bdmc(model: torch.nn.Module, obs: ObservationModel, *, n: int, shape: tuple[int, ...],
         chains: int, steps: int, hmc: HMCConfig, seed: int, y: torch.Tensor | None = None
         ) -> BDMCResult:
    """Forward and reverse AIS (``steps`` distributions, ``chains`` chains each) on n
    images simulated from the model (annealing from the prior)."""
    z_star, x = simulate(model, obs, n, shape, seed=seed, y=y)
    prior = model.prior()
    path = AISPath(model, obs, x, y, prior)
    images = torch.arange(n, device=x.device)
    betas = sigmoid_schedule(steps)
    forward = run_ais(path, path.start(chains, derive_seed(seed, 2), images), betas, hmc=hmc,
                      seed=derive_seed(seed, 3), images=images)
    z0 = z_star.unsqueeze(0).expand(chains, *z_star.shape).contiguous()  # (C, n, D)
    reverse = run_ais(path, z0, betas.flip(0), hmc=hmc, seed=derive_seed(seed, 4), images=images)
    return BDMCResult(forward.log_mean_exp(), -reverse.log_mean_exp(), x)
