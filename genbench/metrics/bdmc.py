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
    pooled_estimate,
    run_ais,
    sigmoid_schedule,
    start_proposal,
)
from genbench.metrics.certify import certified, gap_floor, hopeless
from genbench.metrics.estimates import mean_stderr
from genbench.metrics.obsmodel import ObservationModel
from genbench.metrics.sampling import Encoder, counter_normal, derive_seed, reparameterize
from genbench.metrics.shards import MIN_SHARD, map_subsets


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
         subset: tuple[int, int] | None = None, pooled_with: tuple[int, ...] = ()) -> BDMCResult:
    """Forward and reverse AIS (``steps`` distributions, ``chains`` chains each) on n
    images simulated from the model. ``progress(steps done, steps)`` counts the forward
    then the reverse run's AIS steps.

    The path is the test AIS's: from the prior, or (``from_encoder``) from q(z|x) of each
    simulated image (the model's encoder, or the encoder given: the test AIS's start); the
    reverse run starts at the exact posterior sample z* and anneals back to the same pi_0, so
    its negated log-weight is a stochastic upper bound either way.

    ``subset=(a, b)`` anneals only simulated images a..b (all n are simulated, so each has
    the data and noise it has in the whole run): a shard (:mod:`genbench.metrics.shards`).

    ``pooled_with``: the shorter schedules of the AIS doubling this BDMC certifies. The
    lower bound is then that AIS's estimator, the forward runs at every schedule pooled as
    :func:`genbench.metrics.ais.pooled_estimate` pools them; the upper bound needs only
    the reverse run at ``steps``. Without it the numbers are those of one forward run.
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
    lower = forward.log_mean_exp()
    if pooled_with:
        runs = [(t, run_ais(path, path.start(chains, derive_seed(seed, 6, t), images), sigmoid_schedule(t),
                            hmc=hmc, seed=derive_seed(seed, 7, t), images=images).log_mean_exp())
                for t in pooled_with]
        lower = pooled_estimate([*runs, (steps, lower)])
    return BDMCResult(lower, -reverse.log_mean_exp(), x)


@dataclass(frozen=True)
class Certificate:
    """A BDMC run in rounds of simulated images, stopped as soon as the answer is known."""

    result: BDMCResult  # the images annealed (the first ``images`` of the n simulated)
    gap: float
    stderr: float
    images: int
    certified: bool


def rounds(n: int, first: int) -> list[tuple[int, int]]:
    """Images 0..first, then doubling the total up to n, as contiguous ranges; no range is
    smaller than ``MIN_SHARD`` (a smaller remainder joins the last), so every image's
    arithmetic is the one it gets in a run of all n (see :mod:`genbench.metrics.shards`)."""
    out, a = [], 0
    b = min(n, max(first, MIN_SHARD))
    while a < n:
        if n - b < MIN_SHARD:
            b = n
        out.append((a, b))
        a, b = b, min(n, 2 * b)
    return out


def bdmc_until_certified(model: torch.nn.Module, obs: ObservationModel, *, n: int, first: int,
                         tol: float, shape: tuple[int, ...], chains: int, steps: int, hmc: HMCConfig,
                         seed: int, y: torch.Tensor | None = None, from_encoder: bool = False,
                         pooled_with: tuple[int, ...] = (),
                         progress: Callable[[int, int], None] | None = None) -> Certificate:
    """:func:`bdmc` on the first ``first`` of n simulated images, then on more (the total
    doubling, :func:`rounds`) only while the answer is open: it stops once the gap over the
    images so far is certified (gap + 2 s.e. <= tol) or cannot be at this schedule
    (gap - 2 s.e. > tol, or the gaps so far already put the mean over all n above tol:
    :func:`genbench.metrics.certify.gap_floor`).

    All n images are simulated up front and each anneals with noise addressed by its own
    index, so an image's bounds are the same whether the run stopped after its round or went
    on (the rounds depend on ``first`` and n only, never on a batch or chunk size). Looking
    after each round is a sequential test: with at most log2(n / first) + 1 looks, the
    chance of certifying a gap whose true mean exceeds tol grows over the single-look 2.3%
    by a small factor, not to anything a 2-s.e. rule would hide.
    """
    parts: list[BDMCResult] = []
    done = 0
    for a, b in rounds(n, first):
        # progress in AIS steps x images, of all n (a run that stops early ends short of it)
        track = None if progress is None else (
            lambda t, m, d=done, k=b - a: progress(d * m + t * k, n * m))
        parts.append(map_subsets(bdmc, model, n, span=(a, b), obs=obs, shape=shape, chains=chains,
                                 steps=steps, hmc=hmc, seed=seed, y=y, progress=track,
                                 from_encoder=from_encoder, pooled_with=pooled_with))
        done += b - a
        res = BDMCResult(torch.cat([p.lower for p in parts]), torch.cat([p.upper for p in parts]),
                         torch.cat([p.x for p in parts]))
        gap, se = mean_stderr(res.gap)
        if certified(gap, se, tol) or hopeless(gap, se, tol, gap_floor(res.gap, n)) or b == n:
            return Certificate(res, gap, se, b, certified(gap, se, tol))
    raise AssertionError("unreachable: the last round ends at n")
