"""DRAW: the attention filterbank, importance weights over sequential latents, IWAE and AIS."""

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
from genbench.metrics.elbo import elbo_terms
from genbench.metrics.iwae import iwae_bound
from genbench.metrics.obsmodel import ObservationModel
from genbench.plugins import load_plugins
from genbench.registry import get_model

load_plugins()
DRAW = get_model("draw").cls
draw_module = __import__(DRAW.__module__, fromlist=["filterbank"])
filterbank, read_glimpse, write_patch = (draw_module.filterbank, draw_module.read_glimpse,
                                         draw_module.write_patch)


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: see conftest


def tiny(shape=(1, 6, 6), seed=0, **cfg) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = DRAW.Config(**{"steps": 3, "hidden": 8, "z_dim": 2, "read_n": 2, "write_n": 3, **cfg})
    return DRAW(config, DataInfo("t", "dynamic", shape)).double()


def images(n=4, shape=(1, 6, 6), seed=0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(n, *shape, generator=gen, dtype=torch.float64) < 0.4).double()


def bank(gx=0.0, gy=0.0, var=0.01, delta=1.0, gamma=1.0):
    return torch.tensor([[gx, gy, math.log(var), math.log(delta), math.log(gamma)]],
                        dtype=torch.float64)


def test_full_grid_with_stride_one_reads_and_writes_the_image_back():
    """N = A = B, delta = 1, centred, narrow filters: F_X = F_Y = I, so write(read(x)) = x."""
    fx, fy, gamma = filterbank(bank(), 28, 28, 28)
    torch.testing.assert_close(fx[0], torch.eye(28, dtype=torch.float64), atol=1e-7, rtol=0)
    img = torch.rand(2, 3, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(write_patch(read_glimpse(img, fx, fy), fx, fy), img, atol=1e-6, rtol=0)
    # non-square image: the stride is (max(A, B) - 1) / (N - 1)
    fx, fy, _ = filterbank(bank(), 12, 12, 12)
    rect = torch.rand(1, 1, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(write_patch(read_glimpse(rect, fx, fy), fx, fy), rect, atol=1e-6, rtol=0)


def test_filter_centres_and_intensity_follow_the_paper():
    """Eqs. 22-24 (pixels 1..A): g_X = (A + 1)/2 (g~ + 1), delta = (max(A,B) - 1)/(N - 1) delta~,
    mu_i = g_X + (i - N/2 - 0.5) delta; each row sums to 1; gamma = exp(log gamma).

    sigma = 1.5 pixels and centres >= 3.8 sigma inside the image, so a filter's centre of mass
    over the integer pixels is its mu to ~1e-3 (no aliasing, little truncation)."""
    a, b, n = 28, 20, 5
    fx, fy, gamma = filterbank(bank(gx=-0.2, gy=0.1, var=2.25, delta=0.2, gamma=2.5), n, b, a)
    g_x, g_y, delta = (a + 1) / 2 * 0.8, (b + 1) / 2 * 1.1, (a - 1) / (n - 1) * 0.2
    i = torch.arange(1, n + 1, dtype=torch.float64)
    centre_x = (fx[0] * torch.arange(1, a + 1, dtype=torch.float64)).sum(1)
    centre_y = (fy[0] * torch.arange(1, b + 1, dtype=torch.float64)).sum(1)
    torch.testing.assert_close(centre_x, g_x + (i - n / 2 - 0.5) * delta, atol=5e-3, rtol=0)
    torch.testing.assert_close(centre_y, g_y + (i - n / 2 - 0.5) * delta, atol=5e-3, rtol=0)
    torch.testing.assert_close(fx.sum(-1), torch.ones(1, n, dtype=torch.float64))
    assert gamma.item() == pytest.approx(2.5)


@pytest.mark.parametrize("attention", [True, False])
def test_importance_weights_are_the_joint_over_q(attention):
    """log w = log p(x|z) + log N(z; 0, I) - log q(z|x), with p(x|z) = decode(z): the decoder
    AIS anneals through is the one the weights use, for the concatenated z_1..z_T."""
    model = tiny(attention=attention)
    x = images()
    out = model.infer(x, torch.Generator().manual_seed(0))
    z = out["z"]
    assert z.shape == (4, model.latent_dim) and "importance" in capabilities(model)
    torch.testing.assert_close(model.decode(z).log_prob(x), out["log_lik"])
    w = model.log_importance_weights(x, 7, torch.Generator().manual_seed(1))
    assert w.shape == (7, 4)


def test_mean_log_weight_is_the_elbo():
    """E_q[log w] = E_q[log p(x|z)] - sum_t KL_t (the training objective, closed-form KL)."""
    model = tiny()
    x = images(2)
    w = model.log_importance_weights(x, 4000, torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    xr = x.repeat(2000, 1, 1, 1)
    with torch.no_grad():
        out = model.infer(xr, gen)
    elbo = (out["log_lik"] - out["kl"]).view(2000, 2)
    se = (w.var(0) / 4000 + elbo.var(0) / 2000).sqrt()
    assert ((w.mean(0) - elbo.mean(0)).abs() < 4 * se).all()


def iwae(w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(w, 0) - math.log(w.shape[0])


def test_iwae_is_above_the_elbo_and_rises_with_k():
    """E[L_k] over 200 repetitions for k = 1, 4, 16, 64: non-decreasing beyond the noise
    (Burda et al. 2015, Theorem 1); L_1 is the ELBO."""
    model = tiny()
    x = images(3)
    gen = torch.Generator().manual_seed(0)
    reps, ks = 200, (1, 4, 16, 64)
    w = model.log_importance_weights(x, reps * ks[-1], gen).view(reps, ks[-1], 3)
    means, ses = [], []
    for k in ks:
        lk = torch.stack([iwae(w[r, :k]) for r in range(reps)]).mean(1)  # (reps,), image mean
        means.append(lk.mean().item())
        ses.append(lk.std().item() / math.sqrt(reps))
    for lo, hi, se_lo, se_hi in zip(means, means[1:], ses, ses[1:], strict=False):
        assert hi > lo - 2 * math.hypot(se_lo, se_hi)
    assert means[-1] - means[0] > 4 * math.hypot(ses[0], ses[-1])  # and it does rise


def test_ais_agrees_with_iwae_at_large_k():
    """A tiny DRAW (6-d latent): AIS through prior() and decode(z) (16 chains x 100
    distributions, HMC, from the prior) and IWAE through the sequential q at k = 20,000
    estimate the same log p(x), so the two paths describe one model.

    Tolerance: both are stochastic lower bounds. IWAE's standard error and bias at k,
    sqrt(Var(w) / k) / E[w] and Var(w) / (2 k E[w]^2) (delta method; Burda et al. 2015), are
    computed from the weights themselves (~0.005 and ~1e-5 nats here). For AIS we allow
    0.1 nats: on this model it changed by < 0.01 nats between 100, 200 and 500 distributions
    (at 500: -24.745, -24.775, -24.374 against IWAE's -24.756, -24.772, -24.381), so 0.1 is
    ten times its observed error. IWAE at large k converges to log p(x) for any q with full
    support, so a log q term that is not q's density, or a decoder that differs between
    the two paths, shows as a gap that does not close.
    """
    model = tiny(steps=3, z_dim=2, hidden=8)
    x = images(3)
    k = 20_000
    w = model.log_importance_weights(x, k, torch.Generator().manual_seed(0))
    lk = iwae(w)
    norm = (w - w.max(0).values).exp()
    rel_var = norm.var(0) / norm.mean(0).square()  # Var(w) / E[w]^2
    iwae_se, iwae_bias = (rel_var / k).sqrt(), rel_var / (2 * k)
    est, accept = ais_log_likelihood(model, ObservationModel("decoder"), x, chains=16, steps=100,
                                     hmc=HMCConfig(leapfrog=5), seed=3)
    assert 0.3 < accept <= 1.0
    tol = 0.1 + 4 * iwae_se + iwae_bias
    assert ((est - lk).abs() < tol).all(), (est, lk, tol)


@pytest.mark.parametrize("from_encoder", [False, True])
def test_ais_from_the_prior_and_from_the_encoder_agree_with_iwae(from_encoder):
    """The same check as above for both starts. From the encoder, DRAW's sequential
    q(z_1..T | x) has no closed-form density, so AIS starts from the diagonal Gaussian
    matched to q's draws (closed_form_start): a different pi_0, the same log p(x)."""
    from genbench.metrics.ais import closed_form_start

    model = tiny(steps=3, z_dim=2, hidden=8)
    x = images(3)
    k = 20_000
    lk = iwae(model.log_importance_weights(x, k, torch.Generator().manual_seed(0)))
    # 400 distributions: at 100 the step size has not adapted yet (acceptance 1.0) and
    # either start is off by up to 0.3 nats on this model; at 400 both are within 0.05, with
    # Wu et al.'s HMC (5 leapfrog steps) and with quick's Hamiltonian AIS (1, momentum kept),
    # which costs a fifth of the gradients
    est, _ = ais_log_likelihood(model, ObservationModel("decoder"), x, chains=16, steps=400,
                                hmc=HMCConfig(leapfrog=1, persistence=0.9), seed=4,
                                from_encoder=from_encoder)
    assert ((est - lk).abs() < 0.1).all(), (est, lk)
    if from_encoder:
        with torch.no_grad():
            q = model.encode(x)
            start = closed_form_start(q, seed=1, images=torch.arange(3), draws=4000)
            z = q.rsample((4000,))
        assert start is not q and isinstance(start.base_dist, torch.distributions.Normal)
        torch.testing.assert_close(start.mean, z.mean(0), atol=0.08, rtol=0)
        torch.testing.assert_close(start.stddev, z.std(0), atol=0.08, rtol=0.05)
        gaussian = torch.distributions.Independent(torch.distributions.Normal(z.mean(0), z.std(0)), 1)
        assert closed_form_start(gaussian, seed=1, images=torch.arange(3)) is gaussian


def test_training_step_lowers_the_loss_and_sampling_works():
    model = tiny(shape=(1, 8, 8)).float()
    x = images(32, (1, 8, 8)).float()
    opts = optimizer_dict(model.configure_optimizers())
    first = step_model(model, Batch(x), opts)["loss"].item()
    for _ in range(30):
        last = step_model(model, Batch(x), opts)["loss"].item()
    assert last < first
    s = model.sample(5, torch.Generator().manual_seed(0))
    assert s.shape == (5, 1, 8, 8) and s.min() >= 0 and s.max() <= 1
    steps = model.sample_steps(5, torch.Generator().manual_seed(0))
    assert steps.shape == (3, 5, 1, 8, 8)
    torch.testing.assert_close(steps[-1], s)


def test_sequential_posterior_is_a_normalized_density():
    """encode(x) = q(z_1, z_2 | x) with 1-d steps: exp(log_prob) integrates to 1 over a grid in
    the plane (so log q is the density of what rsample draws, z_2's law depending on z_1), and
    log_prob of a draw recomputed equals the one recorded while drawing."""
    model = tiny(steps=2, z_dim=1)
    x = images(2)
    q = model.encode(x)
    z = q.rsample((5,))
    assert z.shape == (5, 2, 2)
    torch.testing.assert_close(q.log_prob(z), q.log_prob(z.clone()))
    grid = torch.linspace(-8, 8, 321, dtype=torch.float64)
    step = float(grid[1] - grid[0])
    with torch.no_grad():
        lp = model.encode(x[:1]).log_prob(torch.cartesian_prod(grid, grid)[:, None, :])
    assert float(lp.exp().sum()) * step**2 == pytest.approx(1.0, abs=1e-6)


def test_elbo_and_iwae_metrics_apply_through_encode():
    """The genbench ELBO (Monte Carlo KL) and IWAE cores run on DRAW's sequential q: the ELBO
    agrees with the closed-form-KL objective, and IWAE_200 is above it."""
    model = tiny()
    x = images(3)
    with torch.no_grad():
        recon, kl = elbo_terms(model, x, seed=2, draws=400)
        bound = iwae_bound(model, x, k=200, seed=1, chunk=100)
        out = model.infer(x.repeat(400, 1, 1, 1), torch.Generator().manual_seed(3))
    objective = (out["log_lik"] - out["kl"]).view(400, 3)
    se = objective.std(0) / 20
    assert ((recon - kl - objective.mean(0)).abs() < 5 * se + 0.05).all()
    assert (bound > recon - kl - 5 * se).all() and bound.mean() > (recon - kl).mean()


def test_smoke_run_gets_elbo_iwae_and_ais(tmp_path):
    metrics = smoke_run_metrics("draw", tmp_path, "elbo,iwae,ais")
    for key in ("test_elbo", "test_iwae", "test_ais"):
        assert -784 * math.log(2) < metrics[key] < 0, key
    assert metrics["test_iwae"] > metrics["test_elbo"] - 3 * metrics["test_elbo_stderr"]
    run_dir = next(tmp_path.glob("synthetic/draw/*"))
    # canvases: the smoke preset draws in 3 steps; samples n rows x 3, reconstructions 3 + input
    for kind, columns in (("canvas", 3), ("canvas_reconstructions", 4)):
        png = render(run_dir, kind, tmp_path / f"{kind}.png", n=2)
        assert np.array(Image.open(png)).shape[:2] == (2 + 2 * 30, 2 + columns * 30)


def test_iwae_does_not_depend_on_the_chunk_size():
    """q's draws reparameterize counter noise addressed by (image, draw): grouping images and
    draws differently gives the same bound (it fell back to torch's global stream before)."""
    model = tiny()
    x = torch.bernoulli(torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(0))).double()
    with torch.no_grad():
        bounds = [iwae_bound(model, x, k=12, seed=3, chunk=c) for c in (1, 7, 60)]
    for other in bounds[1:]:
        torch.testing.assert_close(other, bounds[0], rtol=0, atol=1e-12)
