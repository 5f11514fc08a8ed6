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


# -- the adapters on synthetic data -------------------------------------------------------

from pathlib import Path  # noqa: E402

from genbench.data import DataRequest, load_dataset  # noqa: E402
from genbench.errors import GenbenchError  # noqa: E402
from genbench.metrics.context import EvalContext  # noqa: E402
from genbench.metrics.features import fixed_subset, load_or_train_extractor, mean_images  # noqa: E402
from genbench.metrics.quality import SAMPLE_BLOCK, generated_features, modes, quality  # noqa: E402
from genbench.presets import get_preset  # noqa: E402


class TrainingImages(torch.nn.Module):
    """A 'generator' that replays the floor's training subset, plus Gaussian pixel noise."""

    def __init__(self, data, noise: float = 0.0, only_class: int | None = None) -> None:
        super().__init__()
        x, y = data.train.x, data.train.y
        order = fixed_subset(len(x), len(x))
        if only_class is not None:
            order = order[y[order] == only_class]
        self.images = mean_images(x[order], data.info.variant)
        self.noise, self.pos = noise, 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        index = torch.arange(self.pos, self.pos + n) % len(self.images)
        self.pos += n
        eps = torch.randn(self.images[index].shape, generator=generator)
        return (self.images[index] + self.noise * eps).clamp(0, 1)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    data = load_dataset(DataRequest("synthetic"))
    load_or_train_extractor(data, epochs=1, cache_dir=cache)  # trained once for the module
    return data, cache


def _vae(data) -> torch.nn.Module:
    from genbench.plugins import load_plugins
    from genbench.registry import get_model

    load_plugins()
    cls = get_model("vae").cls
    torch.manual_seed(0)
    return cls(cls.Config(hidden=(32,), latent_dim=4), data.info).eval()


def _ctx(model, data, cache: Path, root: Path, seed: int = 0) -> EvalContext:
    return EvalContext(model=model, data=data, preset=get_preset("smoke"), seed=seed,
                       device=torch.device("cpu"), cache_dir=cache, results_root=root)


def test_quality_at_the_floor_for_real_images_and_rising_with_noise(synthetic, tmp_path):
    data, cache = synthetic
    n = get_preset("smoke").n_quality
    assert n <= len(data.train)  # so the replayed images are exactly the floor's
    out = quality(_ctx(TrainingImages(data), data, cache, tmp_path))
    assert out["fid"] == pytest.approx(out["floor_fid"], rel=1e-9)
    assert out["precision"] == out["floor_precision"] and out["coverage"] == out["floor_coverage"]
    assert out["feature_space"].startswith("cnn28-classes:") and 0 < out["feature_accuracy"] <= 1
    floors = list((tmp_path / "synthetic" / "_floor").glob("*.json"))
    assert len(floors) == 1
    stamp = floors[0].stat().st_mtime_ns
    fids = [out["fid"]]
    for noise in (0.1, 0.4):
        fids.append(quality(_ctx(TrainingImages(data, noise), data, cache, tmp_path))["fid"])
    assert all(b > a for a, b in zip(fids, fids[1:], strict=False)), fids
    assert floors[0].stat().st_mtime_ns == stamp  # the floor is stored once, then read


def test_modes_catch_a_single_class_generator(synthetic, tmp_path):
    data, cache = synthetic
    out = modes(_ctx(TrainingImages(data, only_class=3), data, cache, tmp_path))
    assert out["classes_covered"] == 1
    assert out["mode_kl"] == pytest.approx(math.log(10), abs=0.05)
    assert out["inception_score"] < 1.5
    assert out["floor_classes_covered"] == 10 and out["floor_mode_kl"] < 0.1
    full = modes(_ctx(TrainingImages(data), data, cache, tmp_path))
    assert full["classes_covered"] == 10 and full["mode_kl"] == out["floor_mode_kl"]


def test_quality_of_a_vae_has_every_key(synthetic, tmp_path):
    data, cache = synthetic
    model = _vae(data)
    out = {**quality(_ctx(model, data, cache, tmp_path)), **modes(_ctx(model, data, cache, tmp_path))}
    for key in ("fid", "kid", "kid_stderr", "precision", "recall", "density", "coverage",
                "inception_score", "mode_kl", "classes_covered", "floor_fid", "floor_kid"):
        assert math.isfinite(out[key]), key
    assert out["fid"] > out["floor_fid"]  # an untrained VAE is far from real data
    # the bootstrap spread of FID over the samples: positive, and well below FID itself
    assert 0 < out["fid_stderr"] < 0.5 * out["fid"]
    again = quality(_ctx(model, data, cache, tmp_path))
    assert again == {k: v for k, v in out.items() if k in again}  # seeded: reproducible


def test_sample_count_independent_of_chunk(synthetic):
    data, cache = synthetic
    ext = load_or_train_extractor(data, epochs=1, cache_dir=cache)
    model = _vae(data)
    n = 3 * SAMPLE_BLOCK + 5
    a = generated_features(model, ext, n, seed=7, device=torch.device("cpu"), chunk=50)
    b = generated_features(model, ext, n, seed=7, device=torch.device("cpu"), chunk=1000)
    assert a.features.shape[0] == n and b.features.shape[0] == n
    assert torch.allclose(a.features, b.features, atol=1e-5)
    prefix = generated_features(model, ext, SAMPLE_BLOCK, seed=7, device=torch.device("cpu"))
    assert torch.allclose(prefix.features, a.features[:SAMPLE_BLOCK], atol=1e-5)


def test_conditional_sampling_gets_labels_from_the_data(synthetic):
    data, cache = synthetic
    ext = load_or_train_extractor(data, epochs=1, cache_dir=cache)
    seen = []

    class Conditional(torch.nn.Module):
        conditional = True

        def sample(self, n, generator=None, y=None):
            seen.append(y)
            return torch.zeros(n, 1, 28, 28)

    generated_features(Conditional(), ext, 100, seed=0, device=torch.device("cpu"),
                       labels=data.train.y)
    ys = torch.cat(seen)
    assert ys.shape == (100,) and set(ys.tolist()) <= set(range(10)) and len(set(ys.tolist())) > 5


def test_attribute_data_gets_quality_but_no_mode_coverage(tmp_path):
    data = load_dataset(DataRequest("synthetic-rgb")).subset_train(64)

    class Noise(torch.nn.Module):
        def sample(self, n, generator=None):
            return torch.rand(n, 3, 64, 64, generator=generator)

    ctx = _ctx(Noise(), data, tmp_path / "cache", tmp_path)
    ctx.preset = ctx.preset.with_overrides(n_quality=64)
    out = quality(ctx)
    assert out["feature_space"].startswith("cnn64-attributes:") and out["fid"] > out["floor_fid"]
    with pytest.raises(GenbenchError, match="needs class labels"):
        modes(ctx)


def test_fid_pipeline_matches_torchmetrics_with_our_extractor(synthetic):
    """torchmetrics' FrechetInceptionDistance accepts a custom feature module: same FID."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    data, cache = synthetic
    ext = load_or_train_extractor(data, epochs=1, cache_dir=cache)

    class Features(torch.nn.Module):
        num_features = 128

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return ext.net(x)[0]

    real = mean_images(data.test.x, data.info.variant)
    fake = (real + 0.2 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    reference = FrechetInceptionDistance(feature=Features(), normalize=True)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    ours = fid_statistics_to_metric(fid_features_to_statistics(ext(fake)[0]),
                                    fid_features_to_statistics(ext(real)[0]))
    assert ours == pytest.approx(float(reference.compute()), rel=1e-4)


def test_floor_path_and_store(tmp_path):
    from genbench.metrics.floor import floor_path, load_or_compute_floor, read_floors

    kw = dict(dataset="mnist-5k", variant="dynamic", feature_space="cnn28-classes:abc", counts="n2-r2")
    assert floor_path(results_root=tmp_path, cache_dir=tmp_path / "c", **kw) == (
        tmp_path / "mnist-5k" / "_floor" / "dynamic-cnn28-classes-abc-n2-r2.json")
    cached = floor_path(results_root=None, cache_dir=tmp_path / "c", **kw)
    assert cached.parent == tmp_path / "c" / "floors" / "mnist-5k"
    calls = []
    path = floor_path(results_root=tmp_path, cache_dir=tmp_path, **kw)
    for _ in range(2):
        got = load_or_compute_floor(path, lambda: calls.append(1) or {"floor_fid": 1.5})
    assert got == {"floor_fid": 1.5} and len(calls) == 1
    assert read_floors(tmp_path, "mnist-5k")[0]["floor_fid"] == 1.5


class CountingSampler(torch.nn.Module):
    """A model's sample() that counts the images it is asked for."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.drawn = model, 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        from genbench.contract import sample_from

        self.drawn += n
        return sample_from(self.model, n, generator)


def test_sample_metrics_draw_the_samples_once_and_agree_with_separate_draws(synthetic, tmp_path):
    """quality, modes and memorization score the same n_quality samples: one evaluation draws
    them once, and each metric's numbers equal those of an evaluation of that metric alone."""
    from genbench.metrics.memorization import memorization_metric

    data, cache = synthetic
    n = get_preset("smoke").n_quality
    shared = CountingSampler(_vae(data))
    ctx = _ctx(shared, data, cache, tmp_path)
    together = [metric(ctx) for metric in (quality, modes, memorization_metric)]
    assert shared.drawn == n
    for metric, value in zip((quality, modes, memorization_metric), together, strict=True):
        alone = CountingSampler(_vae(data))
        assert metric(_ctx(alone, data, cache, tmp_path)) == value
        assert alone.drawn == n


def test_prdc_at_several_k_in_one_pass_equals_one_call_per_k():
    """precision/recall (k=3) and density/coverage (k=5) share their distance passes; the
    numbers are those of one call per k, to the bit (and k-NN radii at once likewise)."""
    from genbench.metrics.prdc import knn_radii, knn_radii_at, prdc_at, prdc_features_to_metric

    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(300, 8, generator=g), 1.2 * torch.randn(450, 8, generator=g) + 0.2
    both = prdc_at(real, fake, ks=(3, 5), chunk=64)
    for k in (3, 5):
        assert both[k] == prdc_features_to_metric(real, fake, k=k, chunk=64)
        assert torch.equal(knn_radii_at(fake, (3, 5), 64)[k], knn_radii(fake, k, 64))
    assert 0 < both[3]["precision"] < 1 and 0 < both[5]["coverage"] < 1


def test_fid_eigendecompositions_run_on_one_thread_and_leave_the_thread_count_alone():
    """The D x D eigendecompositions run single-threaded (MKL's threaded syevd spins on a busy
    machine); the caller's thread count is restored, and the FID is the same either way."""
    from genbench.metrics.frechet import trace_sqrt_product

    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(500, 64, generator=g, dtype=torch.float64) for _ in range(2))
    s1, s2 = torch.cov(a.T), torch.cov(b.T)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = trace_sqrt_product(s1, s2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(two, trace_sqrt_product(s1, s2))
    want = float(scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real.trace())
    assert float(two) == pytest.approx(want, rel=1e-9)
