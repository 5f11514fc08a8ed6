"""Latent-space operations behind the galleries: pure functions on tensors.

- interpolation, linear or spherical (slerp, Shoemake 1985; White 2016 argues slerp keeps
  a Gaussian latent's norm, where the straight line passes through improbably small codes);
- arithmetic with class- or attribute-mean vectors (Radford et al. 2016 averaged latent
  vectors; Larsen et al. 2016 edited CelebA attributes this way);
- the 2-D latent manifold of Kingma & Welling (2013), Figure 4: a regular grid on the
  unit square mapped through the inverse Gaussian CDF.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Normal

MODES = ("linear", "slerp")


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """(N, D), (N, D), (T,) -> (N, T, D) on the straight line; t=0 gives z0, t=1 gives z1."""
    t = t.to(z0)[None, :, None]
    return z0[:, None] * (1 - t) + z1[:, None] * t


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """(N, D), (N, D), (T,) -> (N, T, D) along the great circle, radius interpolated linearly.

    Nearly parallel endpoints fall back to the straight line (sin(omega) ~ 0).
    """
    t = t.to(z0)[None, :, None]
    n0, n1 = z0.norm(dim=-1, keepdim=True), z1.norm(dim=-1, keepdim=True)
    u0, u1 = z0 / n0.clamp_min(eps), z1 / n1.clamp_min(eps)
    omega = torch.acos((u0 * u1).sum(-1, keepdim=True).clamp(-1 + eps, 1 - eps))[:, None]  # (N,1,1)
    so = torch.sin(omega)
    w0, w1 = torch.sin((1 - t) * omega) / so, torch.sin(t * omega) / so
    direction = w0 * u0[:, None] + w1 * u1[:, None]
    radius = n0[:, None] * (1 - t) + n1[:, None] * t
    curved = direction * radius
    return torch.where(so.abs() < 1e-4, lerp(z0, z1, t[0, :, 0]), curved)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int, mode: str = "linear") -> torch.Tensor:
    """``steps`` codes from z0 to z1 inclusive: (N, D) x 2 -> (N, steps, D)."""
    if mode not in MODES:
        raise ValueError(f"interpolation mode {mode!r}; use linear or slerp")
    t = torch.linspace(0, 1, steps)
    return (lerp if mode == "linear" else slerp)(z0, z1, t)


def class_means(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, D) codes, (N,) labels -> (K, D) class-mean codes (zeros for an absent class)."""
    onehot = torch.nn.functional.one_hot(y.long(), num_classes).to(z)  # (N, K)
    counts = onehot.sum(0).clamp_min(1)[:, None]
    return onehot.T @ z / counts


def attribute_vector(z: torch.Tensor, present: torch.Tensor, unit: bool = True) -> torch.Tensor:
    """mean(z | attribute) - mean(z | not attribute), scaled to unit length by default.

    With a unit vector an edit's strength is a distance in prior standard deviations, so
    "Smiling +3" means the same move in every model.
    """
    on, off = present.bool(), ~present.bool()
    if not on.any() or not off.any():
        return torch.zeros_like(z[0])
    v = z[on].mean(0) - z[off].mean(0)
    return v / v.norm().clamp_min(1e-8) if unit else v


def apply_edit(z: torch.Tensor, vector: torch.Tensor, strength: float) -> torch.Tensor:
    """z + strength * vector: the whole of latent arithmetic. A zero vector changes nothing."""
    return z + strength * vector.to(z)


def class_transfer(z: torch.Tensor, y: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Move each code from its class mean to every class mean: (N, D) -> (N, K, D).

    Column k is z - mean[y] + mean[k]; column y is z itself.
    """
    return z[:, None] - means[y.long()][:, None] + means[None]


def manifold_codes(prior: Distribution, n: int) -> torch.Tensor:
    """An n x n grid of 2-D codes, (n*n, 2): unit-square points through the inverse CDF.

    Kingma & Welling (2013), Fig. 4. For a non-standard Gaussian prior (the AE's ex-post fit)
    the standard grid is mapped through the prior's loc and Cholesky factor.
    """
    loc = prior.mean
    if loc.shape[-1] != 2:
        raise ValueError(f"the latent manifold needs a 2-D latent; this one is {loc.shape[-1]}-D")
    p = (torch.arange(n, dtype=loc.dtype, device=loc.device) + 0.5) / n  # cell centres in (0, 1)
    u = Normal(torch.zeros((), device=loc.device), torch.ones((), device=loc.device)).icdf(p)
    gy, gx = torch.meshgrid(u.flip(0), u, indexing="ij")  # rows top to bottom: z2 high to low
    grid = torch.stack([gx, gy], -1).reshape(n * n, 2)  # (n, n, 2) -> (n*n, 2)
    tril = getattr(prior, "scale_tril", None)
    if tril is None:
        tril = torch.diag(prior.stddev)
    return loc + grid @ tril.T
