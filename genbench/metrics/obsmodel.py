"""The observation model p(x|z) a likelihood is estimated under, and its fast log-likelihoods.

Two observation models, never mixed in one number:

- **own**: the model's ``decode`` p(x|z), used as it is on both data variants, so a row's
  ELBO, IWAE and AIS are log-likelihoods of one model. A density (a Gaussian decoder) on
  binarized data is no probability of the binary image, and a Bernoulli decoder on
  continuous pixels is no density: both are n/a (:func:`own_decoder_reason`).
- **shared family** (Wu et al. 2017): every model with ``generate`` (GANs included) under one
  family around its mean image: a spherical Gaussian N(generate(z), sigma^2 I) on continuous
  data, a Bernoulli of the mean image with a small flip probability on binarized data.
  The noise level is chosen per model on validation images by a bounded 1-D optimizer
  (:func:`choose_noise`) and recorded beside the numbers.

Layout: latent codes come sample-major, z (S, n, D) for n images and S draws (or chains)
each, as torch.distributions lays out sample shapes; log-likelihoods come back (S, n).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from scipy.optimize import minimize_scalar
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from genbench.errors import GenbenchError
from genbench.metrics.sampling import decode, generate

Kind = Literal["decoder", "gaussian", "bernoulli"]


def _group(p: int, limit: int = 100) -> int:
    """The largest divisor of p that is <= limit: pixels per product in :func:`bernoulli_log_lik`."""
    return max(g for g in range(1, min(p, limit) + 1) if p % g == 0)


def bernoulli_log_lik(logits: torch.Tensor, x: torch.Tensor, *, consume: bool = False) -> torch.Tensor:
    """sum_d [x_d l_d - softplus(l_d)] for logits (S, n, P) and x (n, P) -> (S, n).

    The same number as ``Independent(Bernoulli(logits=l), 1).log_prob(x)`` at a fraction
    of the elementwise cost, which on a CPU rivals the decoder's matmul. With
    softplus(l) = relu(l) - log sigmoid(|l|) and relu(l) = (l + |l|)/2:

        log p = sum_d l_d (x_d - 1/2) - 1/2 sum_d |l_d| + sum_groups log prod_d sigmoid(|l_d|),

    one sigmoid per pixel and one log per group of <= 100 pixels (each factor lies in
    [1/2, 1), so a product stays above 2^-100, far from float32's 2^-126). ``consume=True``
    lets it overwrite ``logits`` instead of allocating.
    """
    s, n, p = logits.shape
    linear = torch.einsum("snp,np->sn", logits, x - 0.5)
    a = logits.abs_() if consume else logits.abs()
    linear = linear - 0.5 * a.sum(-1)
    factors = a.sigmoid_().view(s, n, -1, _group(p))  # (S, n, groups, G)
    return linear + factors.prod(-1).log_().sum(-1)


def gaussian_log_lik(mean: torch.Tensor, x: torch.Tensor, sigma: float | torch.Tensor) -> torch.Tensor:
    """log N(x; mean, sigma^2 I) for mean (S, n, P) and x (n, P) -> (S, n); sigma a float
    or one per image (n,)."""
    p = mean.shape[-1]
    sq = (mean - x).pow_(2).sum(-1)
    log_sigma = torch.log(sigma) if isinstance(sigma, torch.Tensor) else math.log(sigma)
    return -0.5 * sq / sigma**2 - p * (log_sigma + 0.5 * math.log(2 * math.pi))


def flip_bernoulli_probs(mean: torch.Tensor, flip: float | torch.Tensor) -> torch.Tensor:
    """Bernoulli probabilities flip + (1 - 2 flip) * mean: bounded away from 0 and 1."""
    return flip + (1.0 - 2.0 * flip) * mean.clamp(0.0, 1.0)


def flip_bernoulli_log_lik(mean: torch.Tensor, x: torch.Tensor, flip: float | torch.Tensor
                           ) -> torch.Tensor:
    pr = flip_bernoulli_probs(mean, flip)
    return (x * pr.log() + (1 - x) * torch.log1p(-pr)).sum(-1)


def _is_bernoulli_logits(px: Distribution) -> bool:
    return isinstance(px, Independent) and isinstance(px.base_dist, Bernoulli)


@dataclass(frozen=True)
class ObservationModel:
    """Which p(x|z) to score under: the model's own ``decode``, or a family around ``generate``.

    ``noise`` is the Gaussian's standard deviation sigma, or the Bernoulli's flip probability;
    a tensor (n,) gives each image its own (several candidate levels scored in one batch).
    """

    kind: Kind
    noise: float | torch.Tensor = 0.0

    def images(self, start: int, stop: int) -> ObservationModel:
        """The observation model of images start..stop (slices a per-image noise)."""
        if isinstance(self.noise, torch.Tensor):
            return ObservationModel(self.kind, self.noise[start:stop])
        return self

    def _level(self, like: torch.Tensor, per_image_shape: tuple[int, ...]) -> float | torch.Tensor:
        """The noise level as a float, or per image shaped to broadcast (e.g. (n,) or (n, 1))."""
        if isinstance(self.noise, torch.Tensor):
            return self.noise.to(like.device, like.dtype).view(per_image_shape)
        return self.noise

    def _output(self, model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None
                ) -> torch.Tensor | Distribution:
        """Decoder output for z (S, n, D): logits or mean (S, n, P), or a distribution."""
        s, n, d = z.shape
        y_rep = None if y is None else y.repeat(s, *([1] * (y.dim() - 1)))  # row s*n+i -> y_i
        flat = z.reshape(s * n, d)
        if self.kind == "decoder":
            px = decode(model, flat, y_rep)
            return px.base_dist.logits.reshape(s, n, -1) if _is_bernoulli_logits(px) else px
        return generate(model, flat, y_rep).reshape(s, n, -1)

    def _value(self, out: torch.Tensor | Distribution, x: torch.Tensor, s: int) -> torch.Tensor:
        xf = x.flatten(1)
        if isinstance(out, Distribution):
            return out.log_prob(x.repeat(s, *([1] * (x.dim() - 1)))).view(s, -1)
        if self.kind == "decoder":
            return bernoulli_log_lik(out, xf, consume=True)  # out is a temporary
        if self.kind == "gaussian":
            return gaussian_log_lik(out, xf, self._level(out, (-1,)))
        return flip_bernoulli_log_lik(out, xf, self._level(out, (-1, 1)))

    def _grad_out(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """d log p(x|z) / d out, in closed form (no pass through the value)."""
        xf = x.flatten(1)
        if self.kind == "decoder":
            return xf - torch.sigmoid(out)
        if self.kind == "gaussian":
            return (xf - out) / self._level(out, (-1, 1)) ** 2
        flip = self._level(out, (-1, 1))
        pr = flip_bernoulli_probs(out, flip)
        inside = (out >= 0) & (out <= 1)  # the clamp passes no gradient outside [0, 1]
        return (1.0 - 2.0 * flip) * (xf / pr - (1 - xf) / (1 - pr)) * inside

    @torch.no_grad()
    def log_lik(self, model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None,
                x: torch.Tensor) -> torch.Tensor:
        """log p(x|z) (S, n) for codes z (S, n, D) of images x (n, C, H, W)."""
        return self._value(self._output(model, z, y), x, z.shape[0])

    def log_lik_and_grad(self, model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None,
                         x: torch.Tensor, *, need_value: bool = True
                         ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(log p(x|z) (S, n) or None, its gradient in z (S, n, D)) for HMC.

        Only z gets a gradient (the model's weights do not), and the gradient flows back
        from the decoder output in closed form, so a leapfrog step that needs no value
        skips the log-likelihood's elementwise work.
        """
        with torch.enable_grad():
            zr = z.detach().requires_grad_(True)
            out = self._output(model, zr, y)
            if isinstance(out, Distribution):
                value = self._value(out, x, z.shape[0])
                (grad,) = torch.autograd.grad(value.sum(), zr)
                return value.detach(), grad
            (grad,) = torch.autograd.grad(out, zr, grad_outputs=self._grad_out(out.detach(), x))
        value = self._value(out.detach(), x, z.shape[0]) if need_value else None
        return value, grad

    @torch.no_grad()
    def sample(self, model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None,
               shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        """x ~ p(x|z) for codes z (n, D): data simulated from the model (BDMC)."""
        out = self._output(model, z.unsqueeze(0), y)
        if isinstance(out, Distribution):
            base = out.base_dist if isinstance(out, Independent) else out
            if not isinstance(base, Normal):
                raise GenbenchError("BDMC needs a Bernoulli or Gaussian decoder to simulate data from")
            noise = torch.randn(base.loc.shape, generator=gen, device=base.loc.device)
            return (base.loc + base.scale * noise).view(-1, *shape)
        out = out[0]
        if self.kind == "decoder":
            x = torch.bernoulli(torch.sigmoid(out), generator=gen)
        elif self.kind == "gaussian":
            noise = torch.randn(out.shape, generator=gen, device=out.device)
            x = out + self._level(out, (-1, 1)) * noise
        else:
            x = torch.bernoulli(flip_bernoulli_probs(out, self._level(out, (-1, 1))), generator=gen)
        return x.view(-1, *shape)

    @torch.no_grad()
    def simulation_params(self, model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None = None
                          ) -> torch.Tensor:
        """What x ~ p(x|z) is drawn from, for codes z (n, D): the mean image or the
        decoder's logits (n, P), or a Gaussian decoder's mean and std stacked (n, 2, P).

        Noise-free and level-free, so data simulated many times over (the inference
        network's sleep phase, :mod:`genbench.metrics.inference`) runs the decoder once.
        """
        out = self._output(model, z.unsqueeze(0), y)
        if isinstance(out, Distribution):
            base = out.base_dist if isinstance(out, Independent) else out
            if not isinstance(base, Normal):
                raise GenbenchError("simulating data needs a Bernoulli or Gaussian decoder")
            return torch.stack([base.loc.flatten(1), base.scale.flatten(1)], 1)
        return out[0]

    def draw(self, params: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """x ~ p(x|z) (n, P) from :meth:`simulation_params`; a per-image noise (n,) gives
        each row its own level."""
        if params.dim() == 3:  # a Gaussian decoder's (mean, std)
            return params[:, 0] + params[:, 1] * torch.randn(params[:, 0].shape, generator=gen,
                                                             device=params.device)
        if self.kind == "decoder":
            return torch.bernoulli(torch.sigmoid(params), generator=gen)
        level = self._level(params, (-1, 1))
        if self.kind == "gaussian":
            return params + level * torch.randn(params.shape, generator=gen, device=params.device)
        return torch.bernoulli(flip_bernoulli_probs(params, level), generator=gen)

    def describe(self) -> str:
        if self.kind == "decoder":
            return "the model's own decoder"
        if self.kind == "gaussian":
            return f"spherical Gaussian, sigma={self.noise:.4g}"
        return f"Bernoulli of the mean image, flip={self.noise:.4g}"


# Bounds of the shared family's noise level, searched in log space.
SIGMA_BOUNDS = (1e-3, 1.0)  # Gaussian std on [0, 1] pixels (Wu et al.'s variances are stds 0.07-0.17)
FLIP_BOUNDS = (1e-6, 0.5)  # Bernoulli flip probability
# tolerance in log(noise), 1% of the level: near the optimum a 784-pixel log-likelihood
# falls by about D * delta^2 nats, under 0.1 nats/image at 1%, far below AIS's error,
# and each tighter digit costs golden-section passes of the objective (AIS for a GAN)
NOISE_XATOL = 1e-2


def noise_bounds(kind: Kind) -> tuple[float, float]:
    """The range the shared family's noise level is searched in."""
    return SIGMA_BOUNDS if kind == "gaussian" else FLIP_BOUNDS


def choose_noise(kind: Kind, objective: Callable[[ObservationModel], float],
                 bounds: tuple[float, float] | None = None, xatol: float = NOISE_XATOL
                 ) -> tuple[float, int]:
    """The noise level maximizing ``objective(obs)`` (a mean validation log-likelihood),
    found by bounded Brent in log space; returns (level, evaluations).

    This is how Wu et al. (2017) fit each generator's variance, on held-out data; a 1-D
    optimizer instead of a grid puts the level where the data want it, not at the nearest
    grid point. ``objective`` should use fixed noise (common random numbers) so that it is
    a deterministic function of the level. A level at a bound is returned as it is.
    """
    lo, hi = bounds or noise_bounds(kind)

    def loss(log_level: float) -> float:
        value = objective(ObservationModel(kind, math.exp(log_level)))
        return -value if math.isfinite(value) else math.inf

    res = minimize_scalar(loss, bounds=(math.log(lo), math.log(hi)), method="bounded",
                          options={"xatol": xatol})
    return float(math.exp(res.x)), int(res.nfev)


def _is_discrete(px: Distribution) -> bool:
    return bool(getattr(px.support, "is_discrete", False))


def own_decoder_reason(model: torch.nn.Module, observation: str, y: torch.Tensor | None = None
                       ) -> str | None:
    """Why the model's own p(x|z) cannot give a log-probability of this data (None: it can).

    ``observation`` is the data's ("bernoulli": binarized pixels, "gaussian": continuous);
    ``y`` one label for a conditional model. The decoder's support decides: binarized data
    need a discrete p(x|z) (a probability), continuous data a density.
    """
    if not callable(getattr(model, "decode", None)):
        return "no observation model p(x|z) of its own (the *_shared metrics score it)"
    prior = model.prior()
    with torch.no_grad():
        px = decode(model, prior.mean.reshape(1, -1), y)
    if observation == "bernoulli" and not _is_discrete(px):
        return ("its p(x|z) is a density, not a probability of binarized pixels "
                "(train it on the continuous variant, or use a Bernoulli decoder)")
    if observation != "bernoulli" and _is_discrete(px):
        return ("its p(x|z) is discrete (Bernoulli) but the pixels are continuous: "
                "no density of the data")
    return None
