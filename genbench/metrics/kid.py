"""Kernel Inception Distance (Bińkowski et al. 2018): unbiased MMD^2 with a cubic kernel.

k(x, y) = (x.y / d + 1)^3 on D-dimensional features. The estimate is averaged over
``subsets`` random subsets of ``subset_size`` rows from each set (drawn independently per
subset, as in the authors' code, torch-fidelity and torchmetrics); its standard error is
the subsets' standard deviation over sqrt(subsets). Randomness is an explicit generator.
Unlike FID, the estimator is unbiased, so sets of different sizes compare fairly, and it
can come out slightly negative when the two sets are alike (the real-vs-real floor). The
standard error treats the subsets as independent; when a set is smaller than
``subset_size`` every subset holds all of it, so the error understates the true spread.
"""

from __future__ import annotations

import math

import torch

from genbench.metrics.finite import require_finite


def polynomial_kernel(x: torch.Tensor, y: torch.Tensor, degree: int = 3, coef: float = 1.0
                      ) -> torch.Tensor:
    """(x y^T / d + coef)^degree: (N, D), (M, D) -> (N, M)."""
    return (x @ y.T / x.shape[1] + coef) ** degree


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased MMD^2 between samples x (m, D) and y (m, D) with the polynomial kernel.

    Diagonal terms k(x_i, x_i) are left out of the within-set means (Gretton et al. 2012,
    Lemma 6).
    """
    m = x.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - kxx.diagonal().sum() + kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * kxy.mean()


def kid_features_to_metric(
    generated: torch.Tensor,
    real: torch.Tensor,
    *,
    subsets: int,
    subset_size: int,
    generator: torch.Generator,
) -> tuple[float, float]:
    """(KID, its standard error) from features (N, D) and (M, D).

    ``subset_size`` is capped at the smaller set; the subsets are drawn with ``generator``
    (on the features' device).
    """
    require_finite(generated, "generated feature rows")  # else KID is NaN
    require_finite(real, "real feature rows")
    m = min(subset_size, generated.shape[0], real.shape[0])
    if m < 2:
        raise ValueError(f"KID needs subsets of at least 2 rows, got {m}")
    g, r = generated.to(torch.float64), real.to(torch.float64)
    values = []
    for _ in range(subsets):
        gi = torch.randperm(g.shape[0], generator=generator, device=g.device)[:m]
        ri = torch.randperm(r.shape[0], generator=generator, device=r.device)[:m]
        values.append(mmd2_unbiased(g[gi], r[ri]))
    vals = torch.stack(values)
    stderr = float(vals.std(unbiased=True)) / math.sqrt(subsets) if subsets > 1 else float("nan")
    return float(vals.mean()), stderr
