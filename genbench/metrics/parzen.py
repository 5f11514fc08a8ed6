"""The Parzen-window (Gaussian kernel density) estimate of Goodfellow et al. (2014).

A mixture of isotropic Gaussians, one on each of M model samples s_j:

    log p(x) = log (1/M) sum_j N(x; s_j, sigma^2 I),

with sigma chosen on validation data from a log grid. It is the legacy number of the GAN
literature and a poor one: in high dimension it is far from log p(x) and it can rank models
in the wrong order (Theis et al. 2016; Wu et al. 2017 found it ranked VAE-50 below VAE-10,
the opposite of AIS). genbench reports it for comparison with old papers only.
"""

from __future__ import annotations

import math

import torch

from genbench.metrics.iwae import LogMeanExp

SIGMA_GRID = tuple(float(s) for s in torch.logspace(-1.5, 0.0, 16))  # 0.032 .. 1


@torch.no_grad()
def parzen_log_density(x: torch.Tensor, centers: torch.Tensor, sigmas: tuple[float, ...], *,
                       chunk: int = 1024) -> torch.Tensor:
    """log p(x) under the window for every sigma: (len(sigmas), N) float64.

    x (N, ...) and centers (M, ...) are flattened; squared distances are formed chunk by
    chunk as |x|^2 - 2 x.s + |s|^2 and the log-mean-exp over centers is streamed, so memory
    is (chunk x chunk) whatever N and M.
    """
    xf, cf = x.flatten(1).double(), centers.flatten(1).double()
    p = xf.shape[1]
    sig = torch.tensor(sigmas, dtype=torch.float64, device=x.device)
    out = []
    for xc in xf.split(chunk):
        acc = LogMeanExp(len(sigmas) * xc.shape[0], x.device)
        for cc in cf.split(chunk):
            d2 = ((xc * xc).sum(1, keepdim=True) - 2 * xc @ cc.T + (cc * cc).sum(1)).clamp_min(0)
            acc.add((-0.5 * d2[None] / sig[:, None, None] ** 2).flatten(0, 1))  # (G*n, m)
        norm = -p * (torch.log(sig) + 0.5 * math.log(2 * math.pi))
        out.append(acc.result().view(len(sigmas), -1) + norm[:, None])
    return torch.cat(out, 1)


def choose_sigma(val: torch.Tensor, centers: torch.Tensor, grid: tuple[float, ...] = SIGMA_GRID
                 ) -> tuple[float, torch.Tensor]:
    """(the sigma of the grid with the highest mean validation log density, all means)."""
    means = parzen_log_density(val, centers, grid).mean(1)
    return grid[int(means.argmax())], means
