"""Sample-quality metrics: closed forms, reference packages and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from genbench.metrics.frechet import (
    FidStatistics,
    fid_features_to_statistics,
    fid_statistics_to_metric,
    frechet_distance,
    sqrtm_psd,
)
from genbench.metrics.kid import kid_features_to_metric, mmd2_unbiased
from genbench.metrics.modes import class_histogram, classes_covered, inception_score, mode_kl
from genbench.metrics.prdc import prdc_features_to_metric, prdc_standard


def _spd(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    return a @ a.T / dim + 0.1 * torch.eye(dim, dtype=torch.float64)


def _scipy_fid(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


# -- FID ---------------------------------------------------------------------------------

def test_frechet_distance_matches_closed_form_and_scipy():
    s1, s2 = _spd(6, 0), _spd(6, 1)
    mu1, mu2 = torch.arange(6.0, dtype=torch.float64), torch.ones(6, dtype=torch.float64)
    # closed form with commuting (diagonal) covariances: sum (sqrt(a) - sqrt(b))^2
    a, b = torch.tensor([1.0, 4.0, 9.0]), torch.tensor([4.0, 1.0, 16.0])
    exact = float(((mu1[:3] - mu2[:3]) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    got = float(frechet_distance(mu1[:3], torch.diag(a), mu2[:3], torch.diag(b)))
    assert got == pytest.approx(exact, rel=1e-10)
    # general covariances against scipy.linalg.sqrtm
    ref = _scipy_fid(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
    assert float(frechet_distance(mu1, s1, mu2, s2)) == pytest.approx(ref, rel=1e-8)
    root = sqrtm_psd(s1)
    assert torch.allclose(root @ root, s1, atol=1e-10)


def test_fid_of_gaussian_samples_converges_to_closed_form():
    """Two sampled Gaussian feature sets: FID -> the closed form of their true parameters."""
    dim, n = 4, 200_000
    s1, s2 = _spd(dim, 2), _spd(dim, 3)
    mu1, mu2 = torch.zeros(dim, dtype=torch.float64), torch.full((dim,), 0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x1 = mu1 + torch.randn(n, dim, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s1).T
    x2 = mu2 + torch.randn(n, dim, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(s2).T
    truth = _scipy_fid(mu1.numpy(), s1.numpy(), mu2.numpy(), s2.numpy())
    got = fid_statistics_to_metric(fid_features_to_statistics(x1), fid_features_to_statistics(x2))
    assert got == pytest.approx(truth, rel=0.02)


def test_fid_against_torchmetrics_and_chunking():
    from torchmetrics.image.fid import _compute_fid

    g = torch.Generator().manual_seed(1)
    real = torch.randn(300, 16, generator=g, dtype=torch.float64)
    fake = 0.8 * torch.randn(300, 16, generator=g, dtype=torch.float64) + 0.3
    one = fid_statistics_to_metric(fid_features_to_statistics(fake), fid_features_to_statistics(real))
    mu_r, cov_r = real.mean(0), torch.cov(real.T)
    mu_f, cov_f = fake.mean(0), torch.cov(fake.T)
    assert one == pytest.approx(float(_compute_fid(mu_f, cov_f, mu_r, cov_r)), rel=1e-8)
    chunked = fid_statistics_to_metric(fid_features_to_statistics(fake, chunk=7),
                                       fid_features_to_statistics(real, chunk=64))
    merged = FidStatistics.empty(16).update(fake[:100]).merge(
        FidStatistics.empty(16).update(fake[100:]))
    assert chunked == pytest.approx(one, rel=1e-10)
    assert fid_statistics_to_metric(merged, fid_features_to_statistics(real)) == pytest.approx(one)


def test_fid_identical_sets_is_zero_and_rises_with_noise():
    g = torch.Generator().manual_seed(2)
    # near-singular covariance (rank 8 of 32), where a naive sqrtm struggles
    x = torch.randn(500, 8, generator=g) @ torch.randn(8, 32, generator=g)
    stats = fid_features_to_statistics(x)
    assert fid_statistics_to_metric(stats, stats) < 1e-6 * float(stats.mean_cov()[1].trace())
    noise = torch.randn(x.shape, generator=g)
    values = [fid_statistics_to_metric(fid_features_to_statistics(x + s * noise), stats)
              for s in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert values[0] < 1e-6
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), values


# -- KID ---------------------------------------------------------------------------------

def _mmd_loops(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, written out term by term."""
    m, d = x.shape
    k = lambda a, b: (a @ b / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_against_direct_unbiased_mmd():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(20, 5, generator=g, dtype=torch.float64)
    y = torch.randn(20, 5, generator=g, dtype=torch.float64) + 0.5
    assert float(mmd2_unbiased(x, y)) == pytest.approx(_mmd_loops(x.numpy(), y.numpy()), rel=1e-10)
    # full-size subsets are permutations: every subset gives the same MMD, stderr 0
    kid, err = kid_features_to_metric(x, y, subsets=4, subset_size=20, generator=g)
    assert kid == pytest.approx(_mmd_loops(x.numpy(), y.numpy()), rel=1e-10)
    assert err == pytest.approx(0.0, abs=1e-10)


def test_kid_against_torchmetrics_poly_mmd_and_is_unbiased():
    from torchmetrics.image.kid import poly_mmd

    g = torch.Generator().manual_seed(4)
    x = torch.randn(64, 8, generator=g, dtype=torch.float64)
    y = torch.randn(64, 8, generator=g, dtype=torch.float64)
    assert float(mmd2_unbiased(x, y)) == pytest.approx(float(poly_mmd(x, y)), rel=1e-8)
    # same distribution: KID centred on 0 within a few standard errors
    a = torch.randn(2000, 8, generator=g)
    b = torch.randn(2000, 8, generator=g)
    kid, err = kid_features_to_metric(a, b, subsets=50, subset_size=200, generator=g)
    assert abs(kid) < 4 * err
    far, far_err = kid_features_to_metric(a + 1, b, subsets=50, subset_size=200, generator=g)
    assert far > 10 * far_err


# -- precision / recall / density / coverage --------------------------------------------------

@pytest.mark.parametrize("k", [3, 5])
def test_prdc_matches_reference_package(k, capsys):
    from prdc import compute_prdc

    g = torch.Generator().manual_seed(5)
    real = torch.randn(300, 10, generator=g, dtype=torch.float64)
    fake = 1.3 * torch.randn(250, 10, generator=g, dtype=torch.float64) + 0.2
    ref = compute_prdc(real_features=real.numpy(), fake_features=fake.numpy(), nearest_k=k)
    got = prdc_features_to_metric(real, fake, k=k, chunk=64)
    for key in ("precision", "recall", "density", "coverage"):
        assert got[key] == pytest.approx(float(ref[key]), abs=1e-12), key
    assert prdc_features_to_metric(real, fake, k=k, chunk=1000) == got
    assert 0 < got["precision"] < 1 and 0 < got["recall"] < 1


def test_prdc_standard_uses_k3_and_k5():
    g = torch.Generator().manual_seed(6)
    real, fake = torch.randn(100, 4, generator=g), torch.randn(100, 4, generator=g)
    std = prdc_standard(real, fake)
    assert std["precision"] == prdc_features_to_metric(real, fake, k=3)["precision"]
    assert std["coverage"] == prdc_features_to_metric(real, fake, k=5)["coverage"]


# -- modes and inception score ----------------------------------------------------------

def test_mode_coverage_catches_a_single_class_generator():
    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    logits_one = torch.zeros(500, 10)
    logits_one[:, 3] = 5.0
    counts = class_histogram(logits_one, 10)
    assert classes_covered(counts, uniform) == 1
    assert mode_kl(counts, uniform) == pytest.approx(math.log(10), rel=1e-12)
    score, _ = inception_score(logits_one)
    assert score == pytest.approx(1.0, abs=1e-9)  # one class: p(y|x) = p(y)
    # a balanced confident generator: every class, KL 0, IS near 10
    logits_all = torch.zeros(500, 10)
    logits_all[torch.arange(500), torch.arange(500) % 10] = 30.0
    counts = class_histogram(logits_all, 10)
    assert classes_covered(counts, uniform) == 10
    assert mode_kl(counts, uniform) == pytest.approx(0.0, abs=1e-12)
    score, err = inception_score(logits_all)
    assert score == pytest.approx(10.0, rel=1e-6) and err < 1e-6


def test_classes_covered_ignores_stray_predictions():
    uniform = torch.full((10,), 0.1, dtype=torch.float64)
    counts = torch.zeros(10, dtype=torch.float64)
    counts[0], counts[1] = 995.0, 5.0  # class 1 at 0.5% of samples, 5% of its data share
    assert classes_covered(counts, uniform) == 1
