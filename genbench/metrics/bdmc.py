"""Bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015; Wu et al. 2017, sec. 5).

On data simulated from the model, x ~ p(x|z*) with z* ~ p(z), z* is an exact posterior
sample of x. Forward AIS from pi_0 gives a stochastic lower bound on log p(x); AIS run in
reverse from z* gives an upper bound (the log of its weights estimates -log p(x)). The gap
between them bounds the error of forward AIS with the same settings on data like the
model's own, which is the sanity check Wu et al. report beside every AIS number.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from genbench.metrics.ais import (
    AISPath,
    HMCConfig,
    closed_form_start,
    run_ais,
    sigmoid_schedule,
    start_proposal,
)
from genbench.metrics.obsmodel import ObservationModel
from genbench.metrics.sampling import Encoder, counter_normal, derive_seed, reparameterize


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
         chains: int, steps: int, hmc: HMCConfig, seed: int, y: torch.Tensor | None = None,
         progress: Callable[[int, int], None] | None = None, from_encoder: bool | Encoder = False,
         subset: tuple[int, int] | None = None) -> BDMCResult:
    """Forward and reverse AIS (``steps`` distributions, ``chains`` chains each) on n
    images simulated from the model. ``progress(steps done, steps)`` counts the forward
    then the reverse run's AIS steps.

    The path is the test AIS's: from the prior, or (``from_encoder``) from q(z|x) of each
    simulated image (the model's encoder, or the encoder given: the test AIS's start); the
    reverse run starts at the exact posterior sample z* and anneals back to the same pi_0, so
    its negated log-weight is a stochastic upper bound either way.

    ``subset=(a, b)`` anneals only simulated images a..b (all n are simulated, so each has
    the data and noise it has in the whole run): a shard (:mod:`genbench.metrics.shards`).
    """
    z_star, x = simulate(model, obs, n, shape, seed=seed, y=y)
    a, b = subset if subset is not None else (0, n)
    if subset is not None:
        z_star, x, y = z_star[a:b], x[a:b], None if y is None else y[a:b]
        obs = obs.images(a, b)
    prior = model.prior()
    init = None
    images = torch.arange(a, b, device=x.device)
    if from_encoder:
        with torch.no_grad():
            init = closed_form_start(start_proposal(model, from_encoder, x, y), derive_seed(seed, 5), images)
    path = AISPath(model, obs, x, y, prior, init)
    betas = sigmoid_schedule(steps)
    forward = run_ais(path, path.start(chains, derive_seed(seed, 2), images), betas, hmc=hmc,
                      seed=derive_seed(seed, 3), images=images,
                      progress=None if progress is None else lambda t, m: progress(t, 2 * m))
    z0 = z_star.unsqueeze(0).expand(chains, *z_star.shape).contiguous()  # (C, n, D)
    reverse = run_ais(path, z0, betas.flip(0), hmc=hmc, seed=derive_seed(seed, 4), images=images,
                      progress=None if progress is None else lambda t, m: progress(m + t, 2 * m))
    return BDMCResult(forward.log_mean_exp(), -reverse.log_mean_exp(), x)
