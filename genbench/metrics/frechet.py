"""The Fréchet distance between feature sets (FID; Heusel et al. 2017), as pure functions.

The data flow follows torch-fidelity's names: ``fid_features_to_statistics`` ->
``fid_statistics_to_metric``. Statistics are float64 sums (count, sum, sum of outer
products), as in torchmetrics' ``FrechetInceptionDistance``, so they stream over chunks and
merge: a set's statistics do not depend on how its features were chunked. The sums are
taken in a shifted frame, f - c with c the first chunk's mean: the one-pass covariance
``outer/n - mean mean^T`` cancels catastrophically when the features share a large common
offset, and centring on c keeps it accurate (FID is translation invariant to ~1e-12).

The distance between N(mu1, S1) and N(mu2, S2) is

    |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

S1 S2 is not symmetric, so taking its square root directly (scipy.linalg.sqrtm, or the
eigenvalues of the product as torchmetrics does) can return complex parts and lose
accuracy when the covariances are near singular. Here the trace uses the symmetric
product instead: with A = S1^(1/2), A S2 A is symmetric PSD and similar to S1 S2, so
tr((S1 S2)^(1/2)) = sum(sqrt(eigvalsh(A S2 A))), eigenvalues clamped at 0. FID(x, x) is
then 0 to rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from genbench.metrics.finite import require_finite


@dataclass
class FidStatistics:
    """Float64 streaming statistics of one feature set: they add, so chunks merge."""

    n: int
    total: torch.Tensor  # (D,) float64 sum of (features - shift)
    outer: torch.Tensor  # (D, D) float64 sum of outer products of (features - shift)
    shift: torch.Tensor | None = None  # (D,) the frame: the first chunk's mean (None: 0)

    @classmethod
    def empty(cls, dim: int, device: torch.device | str = "cpu") -> FidStatistics:
        zeros = torch.zeros(dim, dtype=torch.float64, device=device)
        return cls(0, zeros, torch.zeros(dim, dim, dtype=torch.float64, device=device))

    def update(self, features: torch.Tensor) -> FidStatistics:
        """The statistics with ``features`` (N, D) added."""
        f = features.to(torch.float64)
        shift = self.shift
        if shift is None and self.n == 0 and f.shape[0]:
            shift = f.mean(0)
        g = f - shift if shift is not None else f
        return FidStatistics(self.n + f.shape[0], self.total + g.sum(0), self.outer + g.T @ g,
                             shift)

    def reframed(self, shift: torch.Tensor | None) -> FidStatistics:
        """The same statistics with sums taken about ``shift`` (exact algebra, float64)."""
        old = self.shift if self.shift is not None else torch.zeros_like(self.total)
        new = shift if shift is not None else torch.zeros_like(self.total)
        d = old - new  # f - new = (f - old) + d
        outer = (self.outer + torch.outer(d, self.total) + torch.outer(self.total, d)
                 + self.n * torch.outer(d, d))
        return FidStatistics(self.n, self.total + self.n * d, outer, shift)

    def merge(self, other: FidStatistics) -> FidStatistics:
        if self.n == 0:
            return other
        if other.n == 0:
            return self
        if other.shift is not self.shift:
            other = other.reframed(self.shift)
        return FidStatistics(self.n + other.n, self.total + other.total, self.outer + other.outer,
                             self.shift)

    def mean_cov(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (D,) and unbiased covariance (D, D), as numpy.cov and the common FIDs use."""
        if self.n < 2:
            raise ValueError(f"FID needs at least 2 feature vectors, got {self.n}")
        centre = self.total / self.n  # the mean in the shifted frame
        cov = (self.outer - self.n * torch.outer(centre, centre)) / (self.n - 1)
        mu = centre + self.shift if self.shift is not None else centre
        return mu, cov


def fid_features_to_statistics(features: torch.Tensor, chunk: int | None = None) -> FidStatistics:
    """Statistics of ``features`` (N, D), summed ``chunk`` rows at a time (memory only);
    refuses NaN or inf features (FID would be NaN)."""
    require_finite(features, "feature rows")
    stats = FidStatistics.empty(features.shape[1], features.device)
    step = chunk or max(features.shape[0], 1)
    for start in range(0, features.shape[0], step):
        stats = stats.update(features[start : start + step])
    return stats


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the D x D eigendecompositions on one thread. MKL's threaded ``syevd`` on a 128 x
    128 matrix is 1,500 times slower with two threads than with one on a machine whose cores
    are busy (0.74 s against 0.5 ms: the threads spin at each barrier), and these matrices are
    too small for threads to pay on a quiet one. Also makes the eigenvalues independent of
    the thread count."""
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def sqrtm_psd(matrix: torch.Tensor) -> torch.Tensor:
    """The PSD square root of a symmetric PSD matrix by eigendecomposition (negative
    eigenvalues from rounding are clamped to 0)."""
    sym = 0.5 * (matrix + matrix.T)
    with one_thread():
        vals, vecs = torch.linalg.eigh(sym)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def trace_sqrt_product(sigma1: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """tr((S1 S2)^(1/2)) through the symmetric PSD matrix S1^(1/2) S2 S1^(1/2)."""
    root = sqrtm_psd(sigma1)
    middle = root @ sigma2 @ root
    with one_thread():
        vals = torch.linalg.eigvalsh(0.5 * (middle + middle.T))
    return vals.clamp_min(0).sqrt().sum()


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor,
                     sigma2: torch.Tensor) -> torch.Tensor:
    """The squared Fréchet (2-Wasserstein) distance between two Gaussians, float64."""
    mu1, mu2, sigma1, sigma2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    diff = (mu1 - mu2).square().sum()
    return diff + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product(sigma1, sigma2)


def fid_statistics_to_metric(generated: FidStatistics, real: FidStatistics) -> float:
    """FID between two feature sets' statistics (symmetric; the order is for reading)."""
    mu_g, cov_g = generated.mean_cov()
    mu_r, cov_r = real.mean_cov()
    # rounding can leave a tiny negative value where the sets coincide
    return max(float(frechet_distance(mu_g, cov_g, mu_r, cov_r)), 0.0)
