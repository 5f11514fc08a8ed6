"""Annealed importance sampling with HMC transitions (Neal 2001; Wu et al. 2017).

The path of distributions from pi_0 (the prior, or the encoder's q(z|x)) to the posterior:

    f_beta(z) = pi_0(z)^(1 - beta) [p(z) p(x|z)]^beta = pi_0(z) exp(beta L(z)),
    L(z) = log p(x|z) + log p(z) - log pi_0(z)     (= log p(x|z) when pi_0 is the prior),

on the sigmoid schedule of Wu et al. (2017, sec. 6.2). Each chain's log-weight gathers
(beta_t - beta_{t-1}) L(z_{t-1}) before the HMC transition that leaves f_{beta_t} invariant;
the log-mean-exp over chains is a stochastic lower bound on log p(x) (and, run backwards
from an exact posterior sample, the negated estimate is an upper bound: BDMC).

HMC follows Wu et al.'s code (one trajectory of ``leapfrog`` steps per distribution; step
size multiplied by 1.02 or 0.98 as a moving average of the acceptance rate sits above or
below 0.65, kept in [1e-4, 0.5]), except that each image's chains share their own step
size rather than one for the whole batch, since posteriors differ in scale from image to
image. All chains of a batch of images run together as one (chains, images, D) tensor;
their noise is counter based, so batching images differently draws the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from genbench.metrics.iwae import retain_large_allocations
from genbench.metrics.obsmodel import ObservationModel
from genbench.metrics.sampling import (
    Encoder,
    counter_normal,
    counter_uniform,
    derive_seed,
    encode,
    reparameterize,
)
from genbench.metrics.shards import map_images


@dataclass(frozen=True)
class HMCConfig:
    leapfrog: int = 10
    step_size: float = 0.01  # initial step size (Wu et al.'s code)
    target_accept: float = 0.65
    inc: float = 1.02
    dec: float = 0.98
    min_step: float = 1e-4
    max_step: float = 0.5
    slowness: float = 0.9  # weight of the old value in the acceptance moving average
    # momentum kept between transitions (Hamiltonian AIS, Sohl-Dickstein & Culpepper 2012):
    # p <- persistence p + sqrt(1 - persistence^2) xi before each trajectory; 0 draws it
    # afresh (Wu et al.'s HMC, bit for bit)
    persistence: float = 0.0


def sigmoid_schedule(n: int, rad: float = 4.0) -> torch.Tensor:
    """n inverse temperatures from 0 to 1, dense near both ends (Wu et al. 2017, sec. 6.2)."""
    if n < 2:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    s = torch.sigmoid(torch.linspace(-rad, rad, n, dtype=torch.float64))
    return (s - s[0]) / (s[-1] - s[0])


@dataclass
class PathState:
    """Where the chains are (C, n, D) and what is known there."""

    z: torch.Tensor
    log_lik: torch.Tensor  # L(z) (C, n)
    grad_lik: torch.Tensor  # dL/dz (C, n, D)
    log_init: torch.Tensor  # log pi_0(z) (C, n)
    grad_init: torch.Tensor  # d log pi_0 / dz

    def log_f(self, beta: float) -> torch.Tensor:
        return self.log_init + beta * self.log_lik

    def grad_log_f(self, beta: float) -> torch.Tensor:
        return self.grad_init + beta * self.grad_lik

    def where(self, accept: torch.Tensor, other: PathState) -> PathState:
        """Take ``other``'s fields where ``accept`` (C, n) holds."""
        a2, a3 = accept, accept.unsqueeze(-1)
        return PathState(torch.where(a3, other.z, self.z), torch.where(a2, other.log_lik, self.log_lik),
                         torch.where(a3, other.grad_lik, self.grad_lik),
                         torch.where(a2, other.log_init, self.log_init),
                         torch.where(a3, other.grad_init, self.grad_init))


def _log_prob_and_grad(dist: Distribution, z: torch.Tensor, need_value: bool = True
                       ) -> tuple[torch.Tensor | None, torch.Tensor]:
    """(log dist(z) or None, its gradient in z) for z (C, n, D).

    Gaussians (every prior and encoder genbench ships) in closed form, which keeps the small
    per-step work of HMC off the autograd engine; anything else through autograd.
    """
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if isinstance(base, Normal) and (base is dist or dist.reinterpreted_batch_ndims == 1):
        grad = (base.loc - z) / base.scale.pow(2)
    elif isinstance(dist, MultivariateNormal):
        # (C, n, 1, D) @ (n, D, D) or (D, D); the precision matrix is symmetric
        grad = ((dist.loc - z).unsqueeze(-2) @ dist.precision_matrix).squeeze(-2)
    else:
        with torch.enable_grad():
            zr = z.detach().requires_grad_(True)
            lp = dist.log_prob(zr)
            (grad,) = torch.autograd.grad(lp.sum(), zr)
        return lp.detach(), grad
    return (_log_density(dist, z) if need_value else None), grad


def _log_density(dist: Distribution, z: torch.Tensor) -> torch.Tensor:
    """``dist.log_prob(z)``, NaN where a diverged leapfrog step left z non-finite.

    HMC rejects a proposal whose energy is NaN; torch's argument validation would raise on
    it instead and fail the whole evaluation (BDMC on sharp posteriors did).
    """
    finite = torch.isfinite(z).all(-1)
    if bool(finite.all()):
        return dist.log_prob(z)
    lp = dist.log_prob(torch.where(finite.unsqueeze(-1), z, torch.zeros_like(z)))
    return torch.where(finite, lp, torch.full_like(lp, math.nan))


def start_proposal(model: torch.nn.Module, from_encoder: bool | Encoder, x: torch.Tensor,
                   y: torch.Tensor | None) -> Distribution:
    """q(z|x) to anneal from: ``from_encoder`` itself where it is an encoder (a fitted
    inference network, :mod:`genbench.metrics.inference`), else the model's ``encode``."""
    return from_encoder(x, y) if callable(from_encoder) else encode(model, x, y)


START_DRAWS = 64  # draws of q per image that fix a Gaussian start (see closed_form_start)


def closed_form_start(q: Distribution, seed: int, images: torch.Tensor, draws: int = START_DRAWS
                      ) -> Distribution:
    """q itself where its density is in closed form (a Gaussian encoder); otherwise the
    diagonal Gaussian with q's per-image mean and standard deviation, estimated from
    ``draws`` draws of q.

    AIS is exact from any start pi_0 it can sample and whose normalized density it knows.
    HMC needs the gradient of log pi_0 at every leapfrog step, and for a sequential q
    (DRAW's q(z_t | x, z_<t)) that reruns the encoder through all T steps each time: most of
    the cost, for a start that only has to be close to the posterior. The matched Gaussian
    is as close in location and scale and costs nothing per step; the estimate stays an
    unbiased importance-sampling estimate of p(x), whatever pi_0 is.
    """
    base = q.base_dist if isinstance(q, Independent) else q
    if isinstance(base, Normal) or isinstance(q, MultivariateNormal):
        return q
    eps = counter_normal(seed, images, torch.arange(draws, device=images.device), q.event_shape[-1])
    with torch.no_grad():
        z = reparameterize(q, eps)  # (draws, n, D)
    return Independent(Normal(z.mean(0), z.std(0).clamp_min(1e-4)), 1)


@dataclass
class AISPath:
    """The annealing path for a batch of images x (n, C, H, W)."""

    model: torch.nn.Module
    obs: ObservationModel
    x: torch.Tensor
    y: torch.Tensor | None
    prior: Distribution
    init: Distribution | None = None  # q(z|x) to start from; None: the prior

    def evaluate(self, z: torch.Tensor, *, need_value: bool = True) -> PathState:
        """L and log pi_0 at z (C, n, D) with their gradients (L's value only if asked)."""
        lik, grad = self.obs.log_lik_and_grad(self.model, z, self.y, self.x, need_value=need_value)
        lp, grad_p = _log_prob_and_grad(self.prior, z, need_value)
        if self.init is not None:
            lq, grad_q = _log_prob_and_grad(self.init, z, need_value)
            grad, grad_init = grad + grad_p - grad_q, grad_q
        else:
            lq, grad_init = lp, grad_p
        if not need_value:  # a leapfrog step that only needs the gradient
            nan = torch.full(z.shape[:-1], math.nan, device=z.device)
            return PathState(z, nan, grad, nan, grad_init)
        if self.init is not None:
            lik = lik + lp - lq
        return PathState(z, lik, grad, lq, grad_init)

    def start(self, chains: int, seed: int, images: torch.Tensor) -> torch.Tensor:
        """Exact draws from pi_0, (chains, n, D)."""
        dist = self.init if self.init is not None else self.prior
        d = dist.event_shape[-1]
        eps = counter_normal(seed, images, torch.arange(chains, device=self.x.device), d)
        z = reparameterize(dist, eps)
        return z.expand(chains, self.x.shape[0], d).contiguous()


@dataclass
class StepSize:
    """Per-image HMC step size adapted toward a target acceptance rate."""

    size: torch.Tensor  # (1, n, 1)
    accept_avg: torch.Tensor  # (n,)
    config: HMCConfig

    @classmethod
    def initial(cls, n: int, config: HMCConfig, device: torch.device) -> StepSize:
        return cls(torch.full((1, n, 1), config.step_size, device=device),
                   torch.full((n,), config.target_accept, device=device), config)

    def update(self, accept: torch.Tensor) -> None:
        c = self.config
        self.accept_avg = c.slowness * self.accept_avg + (1 - c.slowness) * accept.float().mean(0)
        factor = torch.where(self.accept_avg > c.target_accept, c.inc, c.dec)
        self.size = (self.size * factor.view(1, -1, 1)).clamp(c.min_step, c.max_step)


def hmc_step(path: AISPath, state: PathState, beta: float, step: StepSize, seed: int,
             images: torch.Tensor, momentum: torch.Tensor | None = None
             ) -> tuple[PathState, torch.Tensor, torch.Tensor | None]:
    """One HMC trajectory leaving f_beta(z) N(p; 0, I) invariant; returns (new state,
    accepted (C, n), the momentum to carry into the next transition or None).

    With ``momentum`` (Hamiltonian AIS) the trajectory starts from it partially refreshed,
    which leaves N(0, I) invariant, and a rejected trajectory negates it: the composition is
    then the reversible HMC move followed by a momentum flip, so the extended target is kept
    and the AIS weights, which see only z, stay exact while one trajectory's direction
    persists across many distributions.
    """
    c, n, d = state.z.shape
    chains = torch.arange(c, device=state.z.device)
    xi = counter_normal(derive_seed(seed, 0), images, chains, d)  # momentum (C, n, D)
    if momentum is None:
        p0 = xi
    else:
        a = step.config.persistence
        p0 = a * momentum + math.sqrt(1.0 - a * a) * xi
    eps = step.size
    p = p0 + 0.5 * eps * state.grad_log_f(beta)
    new = state
    for i in range(step.config.leapfrog):
        last = i == step.config.leapfrog - 1
        new = path.evaluate(new.z + eps * p, need_value=last)
        p = p + (0.5 if last else 1.0) * eps * new.grad_log_f(beta)
    h0 = -state.log_f(beta) + 0.5 * p0.pow(2).sum(-1)
    h1 = -new.log_f(beta) + 0.5 * p.pow(2).sum(-1)
    u = counter_uniform(derive_seed(seed, 1), images, chains)
    accept = torch.log(u) < (h0 - h1)  # NaN energies are rejected
    step.update(accept)
    carried = None if momentum is None else torch.where(accept.unsqueeze(-1), p, -p0)
    return state.where(accept, new), accept, carried


@dataclass
class AISResult:
    log_w: torch.Tensor  # (C, n) float64 log-weights
    z: torch.Tensor  # final states (C, n, D)
    accept_rate: float
    step_size: torch.Tensor  # (n,) final step sizes

    def log_mean_exp(self) -> torch.Tensor:
        """The estimate per image (n,): log of the mean weight over chains."""
        return torch.logsumexp(self.log_w, 0) - math.log(self.log_w.shape[0])

    def stderr(self) -> torch.Tensor:
        """Monte Carlo standard error of :meth:`log_mean_exp` per image (delta method:
        std(w) / (mean(w) sqrt(C))); it understates the error when all chains miss a mode."""
        w = torch.exp(self.log_w - self.log_w.max(0).values)  # (C, n), scaled weights
        return w.std(0) / (w.mean(0) * math.sqrt(w.shape[0]))


def run_ais(path: AISPath, z0: torch.Tensor, betas: torch.Tensor, *, hmc: HMCConfig, seed: int,
            images: torch.Tensor, progress: Callable[[int, int], None] | None = None) -> AISResult:
    """AIS along ``betas`` from states z0 (C, n, D) exactly distributed as f_{betas[0]}.

    Forward (betas 0 -> 1) the log-weights estimate log p(x) - log Z_0; reversed (1 -> 0,
    from exact posterior samples) they estimate -(log p(x) - log Z_0).
    ``progress(steps done, steps)`` is called after each transition.
    """
    state = path.evaluate(z0)
    step = StepSize.initial(z0.shape[1], hmc, z0.device)
    log_w = torch.zeros(state.log_lik.shape, dtype=torch.float64, device=z0.device)
    b = betas.tolist()
    accepted, moves = 0.0, 0
    c, n, d = z0.shape
    momentum = None if hmc.persistence == 0 else counter_normal(
        derive_seed(seed, 0), images, torch.arange(c, device=z0.device), d)  # exact N(0, I) at t = 0
    for t in range(1, len(b)):
        log_w += (b[t] - b[t - 1]) * state.log_lik.double()
        if progress is not None:
            progress(t, len(b) - 1)
        if t == len(b) - 1:
            break  # the last transition would not change the weights
        state, accept, momentum = hmc_step(path, state, b[t], step, derive_seed(seed, t), images, momentum)
        accepted, moves = accepted + float(accept.float().mean()), moves + 1
    return AISResult(log_w, state.z, accepted / max(moves, 1), step.size.view(-1))


ROW_FLOATS = 1 << 22  # decoder outputs (rows x pixels) per batch: memory only


def ais_block(chains: int, x: torch.Tensor) -> int:
    """Images AIS anneals together: chains x images x pixels near ``ROW_FLOATS``.

    Blocks are aligned to global image indices (block k holds images kB..(k+1)B-1) and
    shards hold whole blocks, so every image is computed in the same matrix shapes sharded
    or not: a BLAS result depends on how many rows a product has, so the blocks, not the
    shards, fix the arithmetic.
    """
    return max(1, ROW_FLOATS // (chains * x[0].numel()))


def ais_log_likelihood(model: torch.nn.Module, obs: ObservationModel, x: torch.Tensor,
                       y: torch.Tensor | None = None, *, chains: int, steps: int, hmc: HMCConfig,
                       seed: int, from_encoder: bool | Encoder = False,
                       progress: Callable[[int, int], None] | None = None, offset: int = 0
                       ) -> tuple[torch.Tensor, float]:
    """AIS estimates of log p(x) per image (N,) float64, and the mean acceptance rate.

    Images are batched so that chains x images x pixels stays near ``ROW_FLOATS``; the
    noise is addressed by image index, so the batching does not change the draws.
    ``progress(steps done, steps)`` counts AIS steps over all batches of images.
    ``offset`` is the global index of x[0] (its noise's address), for a shard of the images.
    ``from_encoder``: anneal from the model's q(z|x) (True) or from the given encoder's.
    """
    retain_large_allocations()
    per_batch = ais_block(chains, x)
    betas = sigmoid_schedule(steps)
    prior = model.prior()
    out, rates = [], []
    # blocks aligned to global indices (:func:`ais_block`): the first may be cut by ``offset``
    cuts = [0, *range(per_batch - offset % per_batch, x.shape[0], per_batch), x.shape[0]]
    bounds = [(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
    batches = len(bounds)
    for block, (start, stop) in enumerate(bounds):
        xb, yb = x[start:stop], None if y is None else y[start:stop]
        images = torch.arange(offset + start, offset + start + xb.shape[0], device=x.device)
        init = None
        if from_encoder:
            with torch.no_grad():
                init = closed_form_start(start_proposal(model, from_encoder, xb, yb), derive_seed(seed, 2),
                                         images)
        path = AISPath(model, obs.images(start, start + xb.shape[0]), xb, yb, prior, init)
        done = block * (len(betas) - 1)
        res = run_ais(path, path.start(chains, derive_seed(seed, 0), images), betas, hmc=hmc,
                      seed=derive_seed(seed, 1), images=images,
                      progress=None if progress is None else
                      lambda t, n, d=done: progress(d + t, batches * n))
        out.append(res.log_mean_exp())
        rates.append(res.accept_rate * xb.shape[0])
    return torch.cat(out), sum(rates) / x.shape[0]


def pooled_estimate(runs: Sequence[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """Independent AIS runs of one doubling, pooled per image (N,) float64:
    log sum_k (T_k / sum_j T_j) exp(estimate_k), T_k the distributions of run k.

    Why this is valid: each run's exp(estimate) is an unbiased estimate of p(x) (a mean of
    AIS weights), and so is any mixture of them with weights fixed before seeing the data,
    so the pooled log is a stochastic lower bound like each run's (Jensen). Why these
    weights: for long schedules the variance of the log-weights falls like 1/T (Neal 2001;
    Grosse et al. 2015), and weighting unbiased estimates by inverse variance, here by T,
    minimizes the pooled variance, hence the downward bias of its log (about half the
    relative variance): pooling the T and 2T runs leaves 2/3 of the 2T run's bias instead
    of throwing the shorter run away. Where the shorter run is far worse (before that
    regime) it costs at most log(sum T / T_last) nats (log 1.5 for one doubling), since
    the pooled value is never below the last run's weight times its estimate. A single
    run is returned as it is, bit for bit.
    """
    if len(runs) == 1:
        return runs[0][1]
    total = sum(t for t, _ in runs)
    stacked = torch.stack([est.double() + math.log(t / total) for t, est in runs])
    return torch.logsumexp(stacked, 0)


@dataclass(frozen=True)
class ScheduleResult:
    """AIS run on a doubling schedule: the pooled estimate and how it got there."""

    estimate: torch.Tensor  # (N,) float64, the runs pooled by :func:`pooled_estimate`
    accept_rate: float  # of the last run
    distributions: int  # intermediate distributions of the last run
    converged: bool  # the last two runs' means agreed within the tolerance
    tolerance: float
    means: tuple[tuple[int, float], ...]  # (distributions, mean estimate) of every run
    runs: tuple[tuple[int, torch.Tensor], ...] = ()  # (distributions, per-image estimate)

    @property
    def schedules(self) -> tuple[int, ...]:
        """The distributions of every run, in the order they ran (pooled in the estimate)."""
        return tuple(t for t, _ in self.means)


def ais_until_converged(model: torch.nn.Module, obs: ObservationModel, x: torch.Tensor,
                        y: torch.Tensor | None = None, *, chains: int, start: int, max_steps: int,
                        tol: float, hmc: HMCConfig, seed: int, from_encoder: bool | Encoder = False,
                        progress: Callable[[int, int], None] | None = None) -> ScheduleResult:
    """AIS with ``start`` distributions, doubled until two successive runs agree.

    Each run is independent (its own noise). Converged means the mean estimate over the
    images moved by at most ``tol`` nats/image when the schedule doubled; a run that would
    exceed ``max_steps`` is not started, and then the result is flagged not converged (one
    run alone is never called converged). Agreement is necessary, not sufficient: two runs
    can agree while both miss a posterior mode, which BDMC on simulated data probes.

    The runs are not thrown away: the estimate pools all of them (:func:`pooled_estimate`,
    weights proportional to their distributions), and a BDMC that certifies it pools its
    forward runs at the same schedules (:func:`genbench.metrics.bdmc.bdmc`'s ``pooled_with``).
    Continuing the shorter run's chains instead is not valid: the 2T schedule's
    distributions are not the T schedule's, and a chain's weight is a product over its own.
    """
    steps, prev, means, runs = max(2, start), None, [], []
    while True:
        est, rate = map_images(ais_log_likelihood, model, x, y, obs=obs, chains=chains, steps=steps, hmc=hmc,
                                       seed=derive_seed(seed, steps), from_encoder=from_encoder,
                                       progress=progress, align=ais_block(chains, x))
        mean = float(est.mean())
        means.append((steps, mean))
        runs.append((steps, est))
        converged = prev is not None and abs(mean - prev) <= tol
        if converged or 2 * steps > max_steps:
            return ScheduleResult(pooled_estimate(runs), rate, steps, converged, tol, tuple(means),
                                  tuple(runs))
        prev, steps = mean, 2 * steps
