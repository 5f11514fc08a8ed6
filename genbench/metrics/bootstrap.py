"""Bootstrap uncertainty of FID over the generated samples (Efron & Tibshirani 1993).

FID is a biased, non-linear function of the sample set, with no closed-form standard error.
Resampling the generated features with replacement, ``draws`` times, against the fixed real
reference gives the spread of FID a new set of samples of the same size would show: the
uncertainty that decides whether two models' FIDs differ. The real reference is the same for
every model, so it is held fixed. (Resampling with replacement duplicates points, which adds
a small upward bias to each replicate; the spread, not the level, is what is used.)

The real statistics' square root is computed once, so a replicate costs one covariance of
the generated features and one symmetric eigendecomposition of D x D.
"""

from __future__ import annotations

import torch

from genbench.metrics.frechet import one_thread, sqrtm_psd

DRAWS = 50


def fid_bootstrap(generated: torch.Tensor, real: torch.Tensor, *, generator: torch.Generator,
                  draws: int = DRAWS) -> tuple[float, torch.Tensor]:
    """(standard error, the ``draws`` replicate FIDs) of FID(generated, real) over resampled
    generated features (N, D); ``real`` (M, D) is held fixed."""
    g, r = generated.double(), real.double()
    mu_r, cov_r = r.mean(0), torch.cov(r.T)
    root = sqrtm_psd(cov_r)
    n = g.shape[0]
    reps = []
    for _ in range(draws):
        idx = torch.randint(n, (n,), generator=generator, device=generator.device).to(g.device)
        s = g[idx]
        mu, cov = s.mean(0), torch.cov(s.T)
        middle = root @ cov @ root
        with one_thread():
            vals = torch.linalg.eigvalsh(0.5 * (middle + middle.T))
        tr_sqrt = vals.clamp_min(0).sqrt().sum()
        fid = (mu - mu_r).square().sum() + cov.trace() + cov_r.trace() - 2 * tr_sqrt
        reps.append(float(fid.clamp_min(0)))
    values = torch.tensor(reps, dtype=torch.float64)
    return (float(values.std()) if draws > 1 else float("nan")), values
