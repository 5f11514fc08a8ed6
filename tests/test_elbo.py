"""ELBO, reconstruction and active units against hand computations and closed forms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal, kl_divergence

from genbench.contract import Batch, optimizer_dict, step_model
from genbench.data import DataRequest, load_dataset
from genbench.metrics.context import EvalContext
from genbench.metrics.elbo import (
    active_units,
    elbo_metric,
    elbo_terms,
    posterior_means,
    recon_metric,
    reconstruction_errors,
)
from genbench.metrics.sampling import counter_normal
from genbench.presets import get_preset
from models.vae import VAE, gaussian_kl

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest


class TinyBernoulliVAE(nn.Module):
    """1-d latent, 4-pixel (1x2x2) Bernoulli decoder with fixed weights.

    q(z|x) = N(a.x + c, exp(g.x + h)), logits = w z + b, p(z) = N(0, 1).
    """

    def __init__(self, conditional: bool = False) -> None:
        super().__init__()
        self.a = torch.tensor([0.8, -0.5, 0.3, 1.1])
        self.g = torch.tensor([0.2, -0.3, 0.1, 0.0])
        self.c, self.h = -0.4, -0.7
        self.w = torch.tensor([1.5, -2.0, 0.7, 0.3])
        self.b = torch.tensor([0.1, 0.4, -0.6, 0.2])
        self.conditional = conditional
        self.seen_y: list[torch.Tensor] = []

    def _note(self, y: torch.Tensor | None) -> None:
        if self.conditional:
            assert y is not None
            self.seen_y.append(y)

    def prior(self):
        return Independent(Normal(torch.zeros(1), torch.ones(1)), 1)

    def encode(self, x, y=None):
        self._note(y)
        f = x.flatten(1)
        return Independent(Normal((f @ self.a + self.c)[:, None], (f @ self.g + self.h).exp()[:, None]), 1)

    def decode(self, z, y=None):
        self._note(y)
        logits = (z * self.w + self.b).view(-1, 1, 2, 2)
        return Independent(Bernoulli(logits=logits), 3)

    def generate(self, z, y=None):
        self._note(y)
        return torch.sigmoid(z * self.w + self.b).view(-1, 1, 2, 2)


X4 = torch.tensor([[1.0, 0, 1, 1], [0, 0, 0, 1], [1, 1, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]]).view(-1, 1, 2, 2)


def reference_terms(model: TinyBernoulliVAE, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """E_q[log p(x|z)] by 80-point Gauss-Hermite quadrature and the closed-form KL, in numpy."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)  # weight exp(-t^2/2)
    weights = weights / weights.sum()
    a, g, w, b = (t.double().numpy() for t in (model.a, model.g, model.w, model.b))
    recon, kl = [], []
    for xi in x.flatten(1).double().numpy():
        mu, s = xi @ a + model.c, math.exp(xi @ g + model.h)
        logits = (mu + s * nodes)[:, None] * w + b  # (nodes, 4)
        loglik = (xi * logits - np.logaddexp(0, logits)).sum(1)
        recon.append(weights @ loglik)
        kl.append(0.5 * (mu**2 + s**2 - 1 - 2 * math.log(s)))
    return np.array(recon), np.array(kl)


def test_elbo_terms_match_quadrature_and_closed_form_kl():
    model = TinyBernoulliVAE()
    recon, kl = elbo_terms(model, X4, seed=5, draws=20000)
    ref_recon, ref_kl = reference_terms(model, X4)
    np.testing.assert_allclose(kl.numpy(), ref_kl, rtol=1e-5)
    # Monte-Carlo error of 20000 draws on this 4-pixel model is ~0.01 nats
    np.testing.assert_allclose(recon.numpy(), ref_recon, atol=0.04)
    assert (kl >= 0).all()


def test_elbo_uses_the_stated_noise():
    """With the same counter noise, the recon term is the mean of log p(x|z_s) by hand."""
    model = TinyBernoulliVAE()
    recon, _ = elbo_terms(model, X4, seed=9, draws=3)
    eps = counter_normal(9, torch.arange(5), torch.arange(3), 1)  # (S, N, 1)
    q = model.encode(X4)
    z = q.base_dist.loc + q.base_dist.scale * eps
    by_hand = torch.stack([model.decode(z[s]).log_prob(X4) for s in range(3)]).mean(0)
    torch.testing.assert_close(recon, by_hand)


def test_chunking_does_not_change_the_elbo():
    model = TinyBernoulliVAE()
    x = X4.repeat(7, 1, 1, 1)
    whole = elbo_terms(model, x, seed=1, draws=6, chunk=1000)
    for chunk in (1, 3, 8):
        part = elbo_terms(model, x, seed=1, draws=6, chunk=chunk)
        for a, b in zip(whole, part, strict=True):
            torch.testing.assert_close(a, b)


def test_gaussian_kl_closed_form_against_torch_and_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(6, 3, generator=gen), torch.randn(6, 3, generator=gen)
    q = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
    p = Independent(Normal(torch.zeros(3), torch.ones(3)), 1)
    closed = gaussian_kl(mu, logvar)
    torch.testing.assert_close(closed, kl_divergence(q, p))
    z = q.sample((200_000,))
    mc = (q.log_prob(z) - p.log_prob(z)).double()
    err = mc.std(0) / math.sqrt(z.shape[0])
    assert ((mc.mean(0) - closed.double()).abs() < 4 * err + 1e-3).all()


def test_vae_training_loss_is_minus_elbo_through_distributions():
    info = load_dataset(DataRequest("synthetic")).info
    torch.manual_seed(0)
    model = VAE(VAE.Config(hidden=(16,), latent_dim=3), info)
    x = torch.bernoulli(torch.rand(5, *info.shape, generator=torch.Generator().manual_seed(1)))
    torch.manual_seed(42)
    recon, kl = model.loss_terms(x)
    # the same noise by hand, through torch.distributions
    q = model.encode(x)
    torch.manual_seed(42)
    z = q.base_dist.loc + torch.randn_like(q.base_dist.loc) * q.base_dist.scale
    torch.testing.assert_close(recon, model.decode(z).log_prob(x), rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(kl, kl_divergence(q, model.prior()))
    opts = optimizer_dict(model.configure_optimizers())
    torch.manual_seed(42)
    stats = step_model(model, Batch(x=x), opts)
    torch.testing.assert_close(stats["loss"], -(recon - kl).mean().detach())


def test_reconstruction_errors_by_hand():
    model = TinyBernoulliVAE()
    bce, sse = reconstruction_errors(model, X4, chunk=2)
    xhat = model.generate(model.encode(X4).mean)
    ref_bce = -(X4 * xhat.log() + (1 - X4) * (1 - xhat).log()).flatten(1).sum(1)
    torch.testing.assert_close(bce, ref_bce)
    torch.testing.assert_close(sse, (X4 - xhat).pow(2).flatten(1).sum(1))


def test_active_units_counts_coordinates_with_varying_means():
    gen = torch.Generator().manual_seed(0)
    scales = torch.tensor([1.0, 0.5, 0.05, 0.001])  # variances 1, 0.25, 0.0025, 1e-6
    means = torch.randn(5000, 4, generator=gen) * scales
    assert active_units(means) == 2
    model = TinyBernoulliVAE()
    torch.testing.assert_close(posterior_means(model, X4, chunk=2), model.encode(X4).mean)


def test_conditional_models_get_their_labels():
    model = TinyBernoulliVAE(conditional=True)
    y = torch.arange(5)
    recon, _ = elbo_terms(model, X4, y, seed=0, draws=2, chunk=2)
    assert recon.shape == (5,)
    assert any(t.numel() == 4 for t in model.seen_y)  # decode saw labels repeated per draw
    reconstruction_errors(model, X4, y)


def _ctx(model: nn.Module) -> EvalContext:
    data = load_dataset(DataRequest("synthetic"))
    return EvalContext(model=model.eval(), data=data, preset=get_preset("smoke"), seed=0,
                       device=torch.device("cpu"), cache_dir=Path("."))


def test_adapters_on_the_vae():
    torch.manual_seed(0)
    ctx = _ctx(VAE(VAE.Config(hidden=(16,), latent_dim=4), load_dataset(DataRequest("synthetic")).info))
    out = elbo_metric(ctx)
    assert out["test_elbo"] == pytest.approx(out["test_recon_term"] - out["test_kl_term"], rel=1e-6)
    assert out["test_kl_term"] >= 0 and out["test_elbo_stderr"] > 0
    assert out == elbo_metric(ctx)  # fixed seed: reproducible
    rec = recon_metric(ctx)
    assert rec["recon_bce"] > 0 and rec["recon_mse"] > 0 and rec["recon_mse_stderr"] > 0
