"""Inference networks q(z|x) for models without an encoder of their own (the sleep phase).

A GAN, DCGAN, LAPGAN, the AE (a point encoder) or any plugin with only ``prior`` and
``generate`` has no q(z|x) to importance-sample (IWAE) or anneal (AIS, BDMC) from. Any
normalized q gives a valid IWAE lower bound and a valid AIS start, so one is fitted after
training on the model's own simulations, as in the sleep phase of wake-sleep (Hinton et al.
1995): z ~ p(z), x ~ p(x|z) under the shared observation model, and q(.|x) fitted by
maximum likelihood of z, E log q(z|x), whose optimum is the model's posterior on data like
its own.

The family is the linear-Gaussian one, q(z|x) = N(mu_z + K (x - mu_x), Sigma) with a full
covariance, and its maximum-likelihood fit is in closed form (least squares of z on x; the
residual covariance): no optimizer, no learning rate, no step count. Its statistics need
only the first and second moments of (z, mean image) over the simulated codes; the
observation noise is integrated out exactly (E over x | z of the Bernoulli or Gaussian noise
adds a known diagonal to Cov(x)), so the fit at any noise level costs one Cholesky of a
P x P matrix, and choosing the shared level by a validation IWAE through q re-fits q at
every level tried. On quick mnist-5k's DCGAN (100-d z, a busy machine) this fit on 4,096
codes read about 28 nats about z from a held-out simulated image in 8 s, where a two-layer
MLP trained by Adam on such pairs read 12 nats in 46 s; as the AIS start it took the BDMC
gap at 100 distributions from 56 nats (prior start) to 6.4. On probabilistic PCA it is the
exact posterior.

The decoder runs once per simulated code, ``pairs`` codes in all (drawn from an explicit
generator, decoded ``POOL_BATCH`` at a time into float64 sums: the batch changes the
memory, never the answer); images wider than ``MAX_PIXELS`` get no inference network (a
P x P covariance; the prior remains their start).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch.distributions import MultivariateNormal

from genbench.metrics.obsmodel import Kind, ObservationModel
from genbench.metrics.sampling import derive_seed, reparameterize

POOL_BATCH = 256  # codes decoded at once while simulating: memory, never the answer
MAX_PIXELS = 4096  # a P x P float64 covariance of 128 MB at most (CelebA's 12,288 get none)
JITTER = 1e-8  # added to the diagonals before a Cholesky: rounding, not regularization
HELD_OUT = 512  # fresh simulated pairs on which a fit is measured


@dataclass(frozen=True)
class LinearGaussianQ:
    """q(z|x) = N(z_mean + gain (x - x_mean), scale_tril scale_tril^T) at one noise level:
    the proposal IWAE, AIS and BDMC take in place of an encoder (a plain frozen object, so a
    sharded evaluation can send it to a worker)."""

    z_mean: torch.Tensor  # (D,)
    x_mean: torch.Tensor  # (P,)
    gain: torch.Tensor  # (D, P)
    scale_tril: torch.Tensor  # (D, D)
    level: float  # the observation noise it was fitted at

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor | None = None) -> MultivariateNormal:
        loc = self.z_mean + (x.flatten(1).to(self.gain.dtype) - self.x_mean) @ self.gain.T  # (n, D)
        return MultivariateNormal(loc, scale_tril=self.scale_tril)


@dataclass(frozen=True)
class SimulatedMoments:
    """Moments of (z, mean image m = generate(z)) over the simulated codes, float64: all a
    linear-Gaussian q needs, at any noise level of the observation family ``kind``."""

    kind: Kind
    pairs: int
    z_mean: torch.Tensor  # (D,)
    m_mean: torch.Tensor  # (P,)
    m_sq: torch.Tensor  # E[m^2] per pixel (P,)
    czz: torch.Tensor  # Cov(z) (D, D)
    czm: torch.Tensor  # Cov(z, m) (D, P)
    cmm: torch.Tensor  # Cov(m) (P, P)
    seconds: float  # the decoder's work and the sums

    def at(self, level: float) -> LinearGaussianQ:
        """The maximum-likelihood linear-Gaussian q(z|x) when x ~ p(x|z) has noise ``level``.

        Gaussian: x = m + sigma e, so Cov(x) = Cov(m) + sigma^2 I. Bernoulli of
        p = f + (1 - 2f) m: Cov(x) = (1 - 2f)^2 Cov(m) + diag(E[p (1 - p)]), Cov(z, x) =
        (1 - 2f) Cov(z, m). Then gain = Cov(z, x) Cov(x)^-1 and Sigma = Cov(z) - gain Cov(x, z).
        """
        eye = torch.eye(self.cmm.shape[0], dtype=torch.float64, device=self.cmm.device)
        if self.kind == "gaussian":
            a, x_mean, noise = 1.0, self.m_mean, torch.full_like(self.m_mean, level**2)
        elif self.kind == "bernoulli":
            a = 1.0 - 2.0 * level
            x_mean = level + a * self.m_mean
            noise = x_mean - (level**2 + 2 * level * a * self.m_mean + a * a * self.m_sq)  # E[p(1-p)]
        else:
            raise ValueError(f"no inference network under the {self.kind!r} observation model")
        cxx = a * a * self.cmm + torch.diag(noise.clamp_min(0)) + JITTER * eye
        czx = a * self.czm
        gain = torch.cholesky_solve(czx.T, torch.linalg.cholesky(cxx)).T  # (D, P)
        sigma = self.czz - gain @ czx.T
        d = sigma.shape[0]
        sigma = 0.5 * (sigma + sigma.T) + JITTER * torch.eye(d, dtype=torch.float64, device=sigma.device)
        dtype = torch.get_default_dtype()
        return LinearGaussianQ(self.z_mean.to(dtype), x_mean.to(dtype), gain.to(dtype),
                               torch.linalg.cholesky(sigma).to(dtype), float(level))


@dataclass(frozen=True)
class Inference:
    """A fitted q(z|x), what it cost and how well it fits (recorded beside the metrics)."""

    encoder: LinearGaussianQ
    seconds: float  # simulation, moments and the fit at the chosen level
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
def simulate_moments(model: torch.nn.Module, kind: Kind, pairs: int, *, seed: int) -> SimulatedMoments:
    """Decode ``pairs`` codes z ~ p(z) and sum the moments of (z, generate(z)) in float64."""
    start = time.perf_counter()
    z_all = _prior_draws(model, pairs, _generator(model.prior().mean.device, seed))
    obs = ObservationModel(kind)
    sums: dict[str, torch.Tensor] = {}
    for i in range(0, pairs, POOL_BATCH):
        z = z_all[i:i + POOL_BATCH].double()
        m = obs.simulation_params(model, z_all[i:i + POOL_BATCH]).double()  # (b, P) mean images
        for name, value in (("z", z.sum(0)), ("m", m.sum(0)), ("m2", (m * m).sum(0)),
                            ("zz", z.T @ z), ("zm", z.T @ m), ("mm", m.T @ m)):
            sums[name] = sums[name] + value if name in sums else value
    z_mean, m_mean = sums["z"] / pairs, sums["m"] / pairs
    return SimulatedMoments(kind, pairs, z_mean, m_mean, sums["m2"] / pairs,
                            sums["zz"] / pairs - torch.outer(z_mean, z_mean),
                            sums["zm"] / pairs - torch.outer(z_mean, m_mean),
                            sums["mm"] / pairs - torch.outer(m_mean, m_mean),
                            time.perf_counter() - start)


def finish(moments: SimulatedMoments, model: torch.nn.Module, level: float, *, seed: int,
           held_out: int = HELD_OUT) -> Inference:
    """q at the chosen ``level``, measured on fresh simulated pairs."""
    start = time.perf_counter()
    encoder = moments.at(level)
    log_q, log_prior = held_out_fit(model, moments.kind, encoder, held_out, seed=seed)
    return Inference(encoder, moments.seconds + time.perf_counter() - start, log_q, log_prior)


@torch.no_grad()
def held_out_fit(model: torch.nn.Module, kind: Kind, encoder: LinearGaussianQ, n: int, *,
                 seed: int) -> tuple[float, float]:
    """(mean log q(z*|x), mean log p(z*)) over n fresh pairs z* ~ p(z), x ~ p(x|z*).

    Their difference is the Barber-Agakov lower bound on the mutual information I(z; x):
    how many nats about z q reads from x (the exact posterior reaches I(z; x)).
    """
    gen = _generator(model.prior().mean.device, derive_seed(seed, 0))
    z = _prior_draws(model, n, gen)
    obs = ObservationModel(kind, encoder.level)
    x = torch.cat([obs.draw(obs.simulation_params(model, z[i:i + POOL_BATCH]), gen)
                   for i in range(0, n, POOL_BATCH)])
    log_q = encoder(x).log_prob(z.to(encoder.gain.dtype))
    return float(log_q.double().mean()), float(model.prior().log_prob(z).double().mean())


def fits(pixels: int) -> bool:
    """Whether images of ``pixels`` values get an inference network (see ``MAX_PIXELS``)."""
    return pixels <= MAX_PIXELS
