"""Convolutional DRAW: the sequential q over feature-map latents in ELBO, IWAE and AIS; galleries."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from run_folders import smoke_run_metrics

from genbench.contract import Batch, DataInfo, capabilities, optimizer_dict, step_model
from genbench.galleries import render
from genbench.metrics.ais import HMCConfig, ais_log_likelihood
from genbench.metrics.iwae import iwae_bound
from genbench.metrics.obsmodel import ObservationModel
from genbench.metrics.sampling import counter_normal, reparameterize
from genbench.plugins import load_plugins
from genbench.registry import get_model

load_plugins()
ConvDRAW = get_model("convdraw").cls

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: see conftest


def tiny(shape=(1, 4, 4), seed=0, **cfg) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = ConvDRAW.Config(**{"steps": 2, "hidden": 4, "z_channels": 1, "stride": 2, **cfg})
    return ConvDRAW(config, DataInfo("t", "dynamic", shape)).double()


def images(n=3, shape=(1, 4, 4), seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=gen, dtype=torch.float64) < 0.4).double()


def iwae(w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(w, 0) - math.log(w.shape[0])


def test_latents_are_feature_maps_and_the_weights_use_decode():
    """Each step's z_t is a (z_channels, H/s, W/s) map; log w = log p(x|z) + log N(z; 0, I) -
    log q(z|x) with p(x|z) = decode(z), and q's log_prob recomputed equals the recorded one."""
    model = tiny(shape=(1, 8, 8), z_channels=3)
    assert model.grid == (4, 4) and model.latent_dim == 2 * 3 * 16
    assert "importance" in capabilities(model)
    x = images(shape=(1, 8, 8))
    q = model.encode(x)
    eps = counter_normal(5, torch.arange(3), torch.arange(4), model.latent_dim).double()
    z = reparameterize(q, eps)  # through q's own reparameterize: (S, N, D)
    assert z.shape == (4, 3, model.latent_dim)
    torch.testing.assert_close(q.log_prob(z), q.log_prob(z.clone()))
    out = model.infer(x, z=z[0])
    torch.testing.assert_close(model.decode(z[0]).log_prob(x), out["log_lik"])
    prior = model.prior().log_prob(z[0])
    torch.testing.assert_close(out["log_w"], out["log_lik"] + prior - q.log_prob(z)[0])


def test_sequential_posterior_is_a_normalized_density():
    """q(z_1, z_2 | x) with one latent coordinate per step: exp(log_prob) integrates to 1 over
    a grid in the plane (z_2's law depends on z_1 through the decoder's state)."""
    model = tiny(shape=(1, 2, 2), stride=2)
    assert model.latent_dim == 2
    x = images(1, (1, 2, 2))
    grid = torch.linspace(-7, 7, 201, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    with torch.no_grad():
        lp = model.encode(x).log_prob(torch.cartesian_prod(grid, grid)[:, None, :])
    assert float(lp.exp().sum()) * step**2 == pytest.approx(1.0, abs=1e-6)


def test_iwae_does_not_depend_on_the_chunk_size():
    """The draws are q's reparameterization of counter noise addressed by (image, draw), so
    grouping images and draws differently gives the same bound, bit for bit in float64."""
    model = tiny()
    x = images(5)
    with torch.no_grad():
        bounds = [iwae_bound(model, x, k=12, seed=3, chunk=c) for c in (1, 7, 60)]
    for other in bounds[1:]:
        torch.testing.assert_close(other, bounds[0], rtol=0, atol=1e-12)


def test_ais_from_the_encoder_agrees_with_iwae_at_large_k():
    """AIS through prior() and decode(z), started from the Gaussian matched to q, and IWAE
    through the sequential q at k = 5,000 estimate the same log p(x) (the tolerance is
    argued in tests/test_draw.py: both converge to log p(x) for any q with full support, so
    a log q that is not q's density, or two different decoders, shows as a gap)."""
    model = tiny()
    x = images(3)
    lk = iwae(model.log_importance_weights(x, 5000, torch.Generator().manual_seed(0)))
    est, accept = ais_log_likelihood(model, ObservationModel("decoder"), x, chains=16, steps=200,
                                     hmc=HMCConfig(leapfrog=5), seed=4, from_encoder=True)
    assert 0.3 < accept <= 1.0
    assert ((est - lk).abs() < 0.1).all(), (est, lk)


def test_compression_steps_add_up_to_the_kl_and_end_at_the_mean_reconstruction():
    """The per-step KLs sum to the training objective's KL for the same draws, and with all T
    steps sent the decoded mean is generate(q's mean path); with none the prior's mean."""
    model = tiny(steps=3)
    x = images(4)
    eps = counter_normal(1, torch.arange(4), torch.arange(6), model.latent_dim).double()
    kl, means = model.compression_steps(x, eps)
    assert kl.shape == (3, 4) and means.shape == (3, 4, 1, 4, 4) and (kl >= 0).all()
    with torch.no_grad():
        full = model.infer(x.repeat(6, 1, 1, 1), noise=eps.reshape(24, -1))["kl"].view(6, 4).mean(0)
        torch.testing.assert_close(kl.sum(0), full)
        torch.testing.assert_close(means[-1], model.generate(model.encode(x).mean))
        first = model.encode(x).mean.clone()
        first[:, model.step_dim:] = 0
        torch.testing.assert_close(means[0], model.generate(first))


def test_training_step_lowers_the_loss_and_sampling_works():
    model = tiny(shape=(1, 8, 8)).float()
    x = images(32, (1, 8, 8)).float()
    opts = optimizer_dict(model.configure_optimizers())
    first = step_model(model, Batch(x), opts)["loss"].item()
    for _ in range(30):
        last = step_model(model, Batch(x), opts)["loss"].item()
    assert last < first
    s = model.sample(5, torch.Generator().manual_seed(0))
    steps = model.sample_steps(5, torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    assert steps.shape == (2, 5, 1, 8, 8)
    torch.testing.assert_close(steps[-1], s)


def test_smoke_run_gets_elbo_below_iwae_and_canvas_galleries(tmp_path):
    """`genbench run convdraw --preset smoke` through the CLI: ELBO <= IWAE within noise, both
    negative log-likelihoods of binarized images; the compression curve has one point per step;
    the canvas galleries draw the smoke preset's 3 steps."""
    metrics = smoke_run_metrics("convdraw", tmp_path, "elbo,iwae,compression")
    for key in ("test_elbo", "test_iwae"):  # one epoch of 512 images: far from trained
        assert math.isfinite(metrics[key]) and metrics[key] < 0, key
    assert metrics["test_iwae"] > metrics["test_elbo"] - 3 * metrics["test_elbo_stderr"]
    rate = [metrics[f"compression_bits_{t}"] for t in (1, 2, 3)]  # one point per step sent
    assert rate == sorted(rate) and "compression_bits_4" not in metrics
    assert metrics["compression_jpeg_bits_3"] > 0 and metrics["compression_psnr_3"] > 0
    run_dir = next(tmp_path.glob("synthetic/convdraw/*"))
    for kind, columns in (("canvas", 3), ("canvas_reconstructions", 4)):
        png = render(run_dir, kind, tmp_path / f"{kind}.png", n=2)
        assert np.array(Image.open(png)).shape[:2] == (2 + 2 * 30, 2 + columns * 30)
