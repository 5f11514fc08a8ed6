"""Inference networks q(z|x) for models without an encoder of their own (the sleep phase).

A GAN, DCGAN, LAPGAN, or any plugin with only ``prior`` and ``generate`` has no q(z|x) to
importance-sample (IWAE) or anneal (AIS, BDMC) from. Any normalized q gives a valid IWAE
lower bound and a valid AIS start, so one is fitted after training on the model's own
simulations, as in the sleep phase of wake-sleep (Hinton et al. 1995):

    z ~ p(z),   x ~ p(x|z) under the observation model the likelihood is scored under,
    maximize  E log q(z | x)   over a small MLP that gives a diagonal Gaussian,

maximum likelihood of z under q(.|x) on exact joint samples, whose optimum is the model's
posterior p(z|x) (the closest diagonal Gaussian to it) on data like the model's own.

The shared family's noise level is chosen by maximizing a validation IWAE through q, so q
must exist before the level does: the first fit draws a level per pair, log-uniform over
the family's bounds, and q reads it as an input; once the level is chosen, q is refined at
that level. The decoder runs once per simulated code: a pool of codes and their mean
images is kept, and every step draws fresh observation noise for a minibatch of it.
Randomness comes from one explicit generator per fit and the initial weights from a seed:
a fit is a deterministic function of (model, budget, seed), on any device.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from genbench.metrics.obsmodel import Kind, ObservationModel
from genbench.metrics.sampling import derive_seed, reparameterize

LOG_STD_MIN, LOG_STD_MAX = -12.0, 2.0  # q's std relative to the prior's: sharp posteriors fit
POOL_BATCH = 256  # codes decoded at once while simulating the pool: memory, never the answer


@dataclass(frozen=True)
class SleepBudget:
    """How much a fit may cost (the preset's ``infer_*`` settings)."""

    pairs: int  # simulated codes in the pool: decoder passes
    steps: int  # Adam steps of the first fit (noise levels drawn over the bounds)
    refine_steps: int  # Adam steps at the chosen noise level
    batch: int  # simulated images per step
    hidden: int  # width of the MLP's two hidden layers
    held_out: int = 256  # fresh simulated pairs on which the fit is measured
    lr: float = 1e-3


class InferenceNet(nn.Module):
    """q(z | x, level): a diagonal Gaussian from an MLP of the flattened image and the log
    noise level, in units of the prior's mean and std. The output layer starts at zero, so
    an unfitted q is the (diagonal Gaussian matched to the) prior."""

    def __init__(self, pixels: int, prior: Distribution, hidden: int,
                 bounds: tuple[float, float] | None) -> None:
        super().__init__()
        latent = prior.event_shape[-1]
        self.body = nn.Sequential(nn.Linear(pixels + 1, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Linear(hidden, 2 * latent)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("prior_loc", prior.mean.detach().reshape(latent).clone())
        self.register_buffer("prior_scale", prior.stddev.detach().reshape(latent).clone())
        lo, hi = (math.log(bounds[0]), math.log(bounds[1])) if bounds else (0.0, 0.0)
        self.log_mid, self.log_half = (lo + hi) / 2, max((hi - lo) / 2, 1e-12)
        self.levels = bounds is not None

    def forward(self, x: torch.Tensor, log_level: torch.Tensor) -> Distribution:
        """q(z | x (n, ...), log level (n,)) as Independent(Normal) with batch (n,)."""
        feature = (log_level - self.log_mid) / self.log_half if self.levels else torch.zeros_like(log_level)
        h = self.body(torch.cat([2 * x.flatten(1) - 1, feature.unsqueeze(1)], 1))
        shift, log_scale = self.head(h).chunk(2, -1)
        scale = log_scale.clamp(LOG_STD_MIN, LOG_STD_MAX).exp()
        return Independent(Normal(self.prior_loc + self.prior_scale * shift, self.prior_scale * scale), 1)


@dataclass(frozen=True)
class InferenceEncoder:
    """q(.|x) of a fitted network at one noise level: the proposal IWAE, AIS and BDMC take in
    place of an encoder (a plain object, so a sharded evaluation can send it to a worker)."""

    net: InferenceNet
    level: float

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        log_level = torch.full((x.shape[0],), math.log(self.level) if self.level > 0 else 0.0,
                               device=x.device)
        return self.net(x, log_level)


@dataclass
class SleepFit:
    """A network being fitted, with the pool of simulated codes it is fitted on."""

    model: torch.nn.Module
    kind: Kind
    net: InferenceNet
    z: torch.Tensor  # (pairs, D) codes from the prior
    params: torch.Tensor  # what x ~ p(x|z) is drawn from (ObservationModel.simulation_params)
    seconds: float
    seed: int

    def at(self, level: float) -> InferenceEncoder:
        return InferenceEncoder(self.net, level)


@dataclass(frozen=True)
class Inference:
    """A fitted q(z|x) and what it cost and how well it fits (recorded beside the metrics)."""

    encoder: InferenceEncoder
    seconds: float  # simulation and training, all stages
    log_q: float  # mean log q(z*|x) over held-out simulated pairs (z*, x), nats per code
    log_prior: float  # mean log p(z*) on the same codes: log_q - log_prior is what q learned


def _generator(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def _prior_draws(model: torch.nn.Module, n: int, gen: torch.Generator) -> torch.Tensor:
    prior = model.prior()
    eps = torch.randn(1, n, prior.event_shape[-1], generator=gen, device=prior.mean.device)
    return reparameterize(prior, eps)[0]  # (n, D)


@torch.no_grad()
def simulate_pool(model: torch.nn.Module, kind: Kind, n: int, seed: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(z (n, D) ~ p(z), what x ~ p(x|z) is drawn from for each): the decoder's work of a fit."""
    z = _prior_draws(model, n, _generator(model.prior().mean.device, seed))
    obs = ObservationModel(kind)
    params = torch.cat([obs.simulation_params(model, z[i:i + POOL_BATCH])
                        for i in range(0, n, POOL_BATCH)])
    return z, params


def _log_levels(n: int, bounds: tuple[float, float] | None, gen: torch.Generator,
                device: torch.device) -> torch.Tensor:
    if bounds is None:
        return torch.zeros(n, device=device)
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    return lo + (hi - lo) * torch.rand(n, generator=gen, device=device)


def train(fit: SleepFit, bounds: tuple[float, float] | None, *, steps: int, batch: int, lr: float,
          seed: int) -> None:
    """``steps`` Adam steps of -mean log q(z|x) on minibatches of the pool, each with fresh
    observation noise at levels drawn log-uniformly in ``bounds`` (one level: (l, l))."""
    device = fit.z.device
    gen = _generator(device, seed)
    opt = torch.optim.Adam(fit.net.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, fit.z.shape[0], (batch,), generator=gen, device=device)
        log_level = _log_levels(batch, bounds, gen, device)
        with torch.no_grad():
            x = ObservationModel(fit.kind, log_level.exp()).draw(fit.params[idx], gen)
        loss = -fit.net(x, log_level).log_prob(fit.z[idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def fit_inference(model: torch.nn.Module, kind: Kind, budget: SleepBudget, *, seed: int,
                  bounds: tuple[float, float] | None) -> SleepFit:
    """Simulate the pool and fit q over the noise levels in ``bounds`` (None: the model's
    own decoder, which has no level)."""
    start = time.perf_counter()
    z, params = simulate_pool(model, kind, budget.pairs, derive_seed(seed, 0))
    pixels = params.shape[-1]
    with torch.random.fork_rng(devices=[]):  # initial weights from the seed, not global state
        torch.manual_seed(derive_seed(seed, 1))
        net = InferenceNet(pixels, model.prior(), budget.hidden, bounds)
    fit = SleepFit(model, kind, net.to(z.device), z, params, 0.0, seed)
    train(fit, bounds, steps=budget.steps, batch=budget.batch, lr=budget.lr, seed=derive_seed(seed, 2))
    fit.seconds = time.perf_counter() - start
    return fit


def finish(fit: SleepFit, level: float, budget: SleepBudget) -> Inference:
    """Refine q at the chosen ``level`` and measure it on fresh simulated pairs."""
    start = time.perf_counter()
    if budget.refine_steps > 0 and fit.net.levels:
        train(fit, (level, level), steps=budget.refine_steps, batch=budget.batch, lr=budget.lr,
              seed=derive_seed(fit.seed, 3))
    fit.net.eval().requires_grad_(False)
    encoder = fit.at(level)
    log_q, log_prior = held_out_fit(fit.model, fit.kind, encoder, budget.held_out,
                                    seed=derive_seed(fit.seed, 4))
    return Inference(encoder, fit.seconds + time.perf_counter() - start, log_q, log_prior)


@torch.no_grad()
def held_out_fit(model: torch.nn.Module, kind: Kind, encoder: InferenceEncoder, n: int, *,
                 seed: int) -> tuple[float, float]:
    """(mean log q(z*|x), mean log p(z*)) over n fresh pairs z* ~ p(z), x ~ p(x|z*).

    Their difference is the Barber-Agakov lower bound on the mutual information I(z; x):
    how many nats about z the network reads from x (the true posterior reaches I(z; x)).
    """
    gen = _generator(model.prior().mean.device, seed)
    z = _prior_draws(model, n, gen)
    obs = ObservationModel(kind, encoder.level)
    x = torch.cat([obs.draw(obs.simulation_params(model, z[i:i + POOL_BATCH]), gen)
                   for i in range(0, n, POOL_BATCH)])
    return float(encoder(x).log_prob(z).mean()), float(model.prior().log_prob(z).mean())
