"""Reparameterized draws whose values do not depend on how the work is chunked.

Principle 7 of the design: what is computed (k samples per image) is kept apart from how
it is chunked. A sequential random stream cannot give that (a chunk of 500 draws is not
the first 500 of a chunk of 1000), so the standard-normal noise here is *counter based*:
the value for (image i, sample j, coordinate d) is a hash of (seed, i, j, d), in the
spirit of Philox (Salmon et al. 2011). Any chunk of images and samples reproduces the same
numbers, on any device, without holding k x N x D noise anywhere.

Helpers at the bottom call a model with or without labels (``conditional = True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal

from genbench.contract import Delta, generate_from

_MASK64 = (1 << 64) - 1


def _signed(c: int) -> int:
    """An unsigned 64-bit constant as the int64 torch stores (two's complement)."""
    c &= _MASK64
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)
SAMPLE_STRIDE = 1 << 31  # samples per image addressable by the counter (k < 2^31)


def _shr(h: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's ``>>`` is arithmetic)."""
    return (h >> s) & ((1 << (64 - s)) - 1)


def splitmix64(h: torch.Tensor) -> torch.Tensor:
    """The SplitMix64 finalizer (Steele et al. 2014) on int64, wrapping arithmetic."""
    h = h + _GOLDEN
    h = (h ^ _shr(h, 30)) * _MIX1
    h = (h ^ _shr(h, 27)) * _MIX2
    return h ^ _shr(h, 31)


def counter_normal(seed: int, images: torch.Tensor, samples: torch.Tensor, dim: int) -> torch.Tensor:
    """Standard-normal noise (len(samples), len(images), dim) addressed by counters.

    ``images`` and ``samples`` are int64 indices (global, not chunk-local). Box-Muller on
    the two 32-bit halves of one 64-bit hash per pair of coordinates (both the cosine and
    the sine output are used); the smallest uniform is 2^-33, so tails reach 6.8 standard
    deviations.
    """
    dev = images.device
    half = (dim + 1) // 2
    j = torch.arange(half, device=dev, dtype=torch.int64)
    counter = (images.to(torch.int64)[None, :, None] * SAMPLE_STRIDE
               + samples.to(dev, torch.int64)[:, None, None]) * half + j  # (S, N, D/2)
    h = splitmix64(counter ^ splitmix64(torch.tensor(seed & ((1 << 63) - 1), device=dev)))
    radius = torch.sqrt(-2.0 * torch.log((_shr(h, 32).to(torch.float32) + 0.5) * 2.0**-32))
    angle = (h & 0xFFFFFFFF).to(torch.float32) * (2.0 * math.pi * 2.0**-32)
    return torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], -1)[..., :dim]


def reparameterize(q: Distribution, eps: torch.Tensor) -> torch.Tensor:
    """z = loc + scale * eps for q's location-scale family; eps (S, N, D) -> z (S, N, D).

    Diagonal Gaussians (the usual encoder), full-covariance Gaussians and point masses are
    mapped exactly; so is any q with its own ``reparameterize(eps)`` (a sequential q such as
    Conv DRAW's: z_t = mu_t(z_<t) + sigma_t eps_t). Any other family falls back to
    ``q.rsample`` from torch's global stream seeded by the noise (then the draws depend on
    the chunking).
    """
    base = q.base_dist if isinstance(q, Independent) else q
    if isinstance(base, Normal):
        return base.loc + base.scale * eps
    if isinstance(q, MultivariateNormal):
        return q.loc + (q.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)
    if isinstance(q, Delta):
        return q.loc.expand(eps.shape)
    if callable(own := getattr(q, "reparameterize", None)):
        return own(eps)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(eps.flatten()[0].abs().mul(1e6)) + eps.numel())
        return q.rsample((eps.shape[0],))


def seed_from(gen: torch.Generator) -> int:
    """A 62-bit integer seed drawn from a metric's generator (ctx.generator(salt))."""
    return int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())


def _splitmix_int(h: int) -> int:
    """:func:`splitmix64` on a Python int (no tensor round trip for scalar seeds)."""
    h = (h + 0x9E3779B97F4A7C15) & _MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
    return h ^ (h >> 31)


def derive_seed(seed: int, *tags: int) -> int:
    """A new 62-bit seed from ``seed`` and integer tags (e.g. an AIS step), by SplitMix64."""
    h = seed & _MASK64
    for tag in tags:
        h = _splitmix_int(h ^ _splitmix_int(tag & _MASK64))
    return h & ((1 << 62) - 1)


def counter_uniform(seed: int, images: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) noise (len(samples), len(images)) addressed by counters."""
    samples = samples.to(images.device, torch.int64)
    counter = images.to(torch.int64)[None, :] * SAMPLE_STRIDE + samples[:, None]  # (S, N)
    h = splitmix64(counter ^ splitmix64(torch.tensor(seed & ((1 << 63) - 1), device=images.device)))
    return _shr(h, 40).to(torch.float32) * 2.0**-24


# -- calling a model with or without labels --------------------------------------------

# (x, y) -> q(z|x): what IWAE draws from and AIS starts at; a model's ``encode``, or the
# inference network fitted for a model without one (genbench.metrics.inference)
Encoder = Callable[[torch.Tensor, "torch.Tensor | None"], Distribution]


def encode(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None) -> Distribution:
    return model.encode(x) if y is None else model.encode(x, y=y)


def decode(model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> Distribution:
    return model.decode(z) if y is None else model.decode(z, y=y)


def generate(model: torch.nn.Module, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    return generate_from(model, z, y)  # decode(z).mean for a model without generate


def labels_for(model: torch.nn.Module, y: torch.Tensor | None) -> torch.Tensor | None:
    """The labels to pass: ``y`` for a conditional model, None otherwise."""
    return y if getattr(model, "conditional", False) else None


NOT_FINITE = "samples are not finite"


def require_finite(samples: torch.Tensor) -> torch.Tensor:
    """``samples`` unchanged, or GenbenchError "samples are not finite" (NaN or inf in them):
    every sample metric is then n/a with that reason, not a silent 0 or nan."""
    from genbench.errors import GenbenchError

    if not bool(torch.isfinite(samples).all()):
        bad = int((~torch.isfinite(samples)).flatten(1).any(1).sum()) if samples.dim() > 1 else 1
        raise GenbenchError(f"{NOT_FINITE} ({bad} of {samples.shape[0]} hold NaN or inf)")
    return samples
