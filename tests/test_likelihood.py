"""IWAE, AIS, BDMC and Parzen against the closed-form log p(x) of probabilistic PCA.

PPCA (Tipping & Bishop 1999) is a latent-variable model whose marginal is known exactly:
z ~ N(0, I), x | z ~ N(W z + b, s^2 I) gives x ~ N(b, W W^T + s^2 I), and the posterior
p(z|x) is Gaussian too. So every estimator can be checked against the truth.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, MultivariateNormal, Normal

from genbench.metrics.ais import AISPath, HMCConfig, ais_log_likelihood, run_ais, sigmoid_schedule
from genbench.metrics.bdmc import bdmc
from genbench.metrics.elbo import elbo_terms
from genbench.metrics.iwae import LogMeanExp, iwae_bound
from genbench.metrics.obsmodel import (
    ObservationModel,
    bernoulli_log_lik,
    choose_noise,
    flip_bernoulli_log_lik,
    gaussian_log_lik,
)
from genbench.metrics.sampling import counter_normal

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest


class PPCA(nn.Module):
    """Linear-Gaussian latent model on 1x2x3 'images' with the contract's capabilities.

    ``encode`` returns the exact posterior when ``inflate == 1`` and ``shift == 0``, else a
    deliberately wrong one (wider, shifted) so that the bounds are not trivially tight.
    """

    def __init__(self, d: int = 2, s: float = 0.5, inflate: float = 1.5, shift: float = 0.1,
                 seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.shape, self.s, self.inflate, self.shift = (1, 2, 3), s, inflate, shift
        self.W = nn.Parameter(torch.randn(6, d, generator=gen), requires_grad=False)
        self.b = nn.Parameter(0.3 * torch.randn(6, generator=gen), requires_grad=False)
        self.register_buffer("zero", torch.zeros(d))

    def prior(self):
        return Independent(Normal(self.zero, torch.ones_like(self.zero)), 1)

    def generate(self, z):
        return (z @ self.W.T + self.b).view(-1, *self.shape)

    def decode(self, z):
        mean = self.generate(z)
        return Independent(Normal(mean, torch.full_like(mean, self.s)), 3)

    def posterior(self, x):
        d = self.W.shape[1]
        cov = self.s**2 * torch.linalg.inv(self.W.T @ self.W + self.s**2 * torch.eye(d))
        mean = (x.flatten(1) - self.b) @ self.W @ cov / self.s**2
        return mean, cov

    def encode(self, x):
        mean, cov = self.posterior(x)
        if self.inflate == 1.0 and self.shift == 0.0:
            return MultivariateNormal(mean, cov)
        sd = cov.diagonal().sqrt() * self.inflate
        return Independent(Normal(mean + self.shift, sd.expand_as(mean)), 1)

    def marginal(self):
        return MultivariateNormal(self.b, self.W @ self.W.T + self.s**2 * torch.eye(6))

    def log_px(self, x):
        return self.marginal().log_prob(x.flatten(1))

    def data(self, n: int, seed: int = 1):
        torch.manual_seed(seed)
        return self.marginal().sample((n,)).view(n, *self.shape)


GAUSS = ObservationModel("gaussian", 0.5)


# -- observation models ------------------------------------------------------------------

def test_fast_log_likelihoods_match_torch_distributions():
    gen = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(3, 5, 1, 28, 28, generator=gen)
    x = torch.bernoulli(torch.rand(5, 1, 28, 28, generator=gen))
    ref = Independent(Bernoulli(logits=logits), 3).log_prob(x)
    torch.testing.assert_close(bernoulli_log_lik(logits.flatten(2), x.flatten(1)), ref, rtol=1e-5, atol=2e-3)
    mean = torch.rand(3, 5, 784, generator=gen)
    ref = Independent(Normal(mean, 0.1), 1).log_prob(x.flatten(1))
    torch.testing.assert_close(gaussian_log_lik(mean, x.flatten(1), 0.1), ref, rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("obs", [ObservationModel("decoder"), GAUSS, ObservationModel("bernoulli", 0.1)])
def test_observation_gradients_match_autograd(obs):
    model = PPCA()
    x = model.data(4)
    if obs.kind == "bernoulli":
        x = (x > 0).float()
    z = torch.randn(3, 4, 2, generator=torch.Generator().manual_seed(0))
    value, grad = obs.log_lik_and_grad(model, z, None, x)
    zr = z.clone().requires_grad_(True)
    with torch.enable_grad():
        if obs.kind == "bernoulli":
            ref = flip_bernoulli_log_lik(model.generate(zr.view(12, 2)).view(3, 4, 6), x.flatten(1), 0.1)
        else:
            ref = model.decode(zr.view(12, 2)).log_prob(x.repeat(3, 1, 1, 1)).view(3, 4)
        (ref_grad,) = torch.autograd.grad(ref.sum(), zr)
    torch.testing.assert_close(value, ref.detach(), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-4)


def test_counter_noise_is_standard_normal_and_chunk_addressed():
    from scipy import stats
    e = counter_normal(7, torch.arange(20), torch.arange(250), 10)
    assert stats.kstest(e.flatten().numpy(), "norm").pvalue > 1e-3
    assert abs(float(e.mean())) < 0.02 and abs(float(e.var()) - 1) < 0.03
    torch.testing.assert_close(counter_normal(7, torch.arange(10, 20), torch.arange(100, 250), 10),
                               e[100:250, 10:20], rtol=0, atol=0)
    assert not torch.equal(counter_normal(8, torch.arange(20), torch.arange(250), 10), e)


def test_streaming_log_mean_exp_matches_logsumexp():
    v = 50 * torch.randn(3, 1000, dtype=torch.float64)
    acc = LogMeanExp(3, v.device)
    for part in v.split(77, dim=1):
        acc.add(part)
    torch.testing.assert_close(acc.result(), torch.logsumexp(v, 1) - math.log(1000))


# -- IWAE ----------------------------------------------------------------------------------

def test_iwae_is_exact_with_the_true_posterior():
    """p(x, z) / p(z|x) = p(x) for every z: zero-variance weights, any k."""
    model = PPCA(inflate=1.0, shift=0.0)
    x = model.data(10)
    for obs in (ObservationModel("decoder"), GAUSS):
        torch.testing.assert_close(iwae_bound(model, x, k=3, seed=0, chunk=2, obs=obs).float(),
                                   model.log_px(x), rtol=0, atol=2e-4)


def test_iwae_agrees_with_the_truth_and_rises_with_k():
    model = PPCA()
    x = model.data(100)
    truth = model.log_px(x).double()
    recon, kl = elbo_terms(model, x, seed=3, draws=500)
    means = {k: float(iwae_bound(model, x, k=k, seed=1, chunk=4096).mean()) for k in (1, 4, 16, 64, 512)}
    assert means[1] < means[4] < means[16] < means[64] < means[512] + 0.005  # non-decreasing in k
    assert float((recon - kl).mean()) <= means[4]  # IWAE_k >= ELBO
    bound = iwae_bound(model, x, k=512, seed=1, chunk=4096)
    err = bound - truth
    assert abs(float(err.mean())) < 0.01 and float(err.abs().max()) < 0.2
    assert float(err.mean()) < 0.005  # a lower bound, on average


def test_iwae_does_not_depend_on_the_chunk():
    model = PPCA()
    x = model.data(13)
    whole = iwae_bound(model, x, k=100, seed=5, chunk=10_000)
    for chunk in (1, 7, 100, 333):
        torch.testing.assert_close(iwae_bound(model, x, k=100, seed=5, chunk=chunk), whole)


def test_iwae_with_a_huge_k_runs_in_small_chunks():
    """Memory is bounded by the chunk: 200,000 draws never exist at once."""
    model = PPCA()
    x = model.data(2)
    bound = iwae_bound(model, x, k=50_000, seed=2, chunk=5_000)
    torch.testing.assert_close(bound.float(), model.log_px(x), rtol=0, atol=0.01)


# -- AIS and BDMC --------------------------------------------------------------------------

def _ais(model, x, steps, *, seed=0, chains=16, init=None, hmc=None):
    images = torch.arange(x.shape[0])
    path = AISPath(model, GAUSS, x, None, model.prior(), init)
    z0 = path.start(chains, seed + 100, images)
    return run_ais(path, z0, sigmoid_schedule(steps), hmc=hmc or HMCConfig(), seed=seed, images=images)


def test_sigmoid_schedule():
    b = sigmoid_schedule(100)
    assert b[0] == 0 and b[-1] == 1 and (b.diff() > 0).all()
    assert b.diff()[0] < b.diff()[50]  # dense near the ends (Wu et al. 2017, sec. 6.2)


def test_ais_agrees_with_the_truth_and_improves_with_more_distributions():
    model = PPCA()
    x = model.data(32)
    truth = model.log_px(x).double()
    hmc = HMCConfig(step_size=0.1)
    runs = {steps: _ais(model, x, steps, hmc=hmc) for steps in (5, 50, 400)}
    err = {steps: res.log_mean_exp() - truth for steps, res in runs.items()}
    mean_abs = {s: float(e.abs().mean()) for s, e in err.items()}
    assert mean_abs[5] > mean_abs[50] > mean_abs[400]
    # within the stated (chain-to-chain) error: per image, and for the mean over images
    se = runs[400].stderr()
    assert float(err[400].pow(2).mean().sqrt()) < 2 * float(se.pow(2).mean().sqrt())
    assert float((err[400].abs() / se).max()) < 4
    assert abs(float(err[400].mean())) < 3 * float(se.pow(2).sum().sqrt()) / len(se)
    assert mean_abs[400] < 0.15


def test_ais_from_the_encoder():
    model = PPCA()
    x = model.data(16)
    res = _ais(model, x, 100, init=model.encode(x), hmc=HMCConfig(step_size=0.1))
    err = res.log_mean_exp() - model.log_px(x)
    assert float((err.abs() / res.stderr()).max()) < 4 and float(err.abs().mean()) < 0.05


def test_ais_batching_does_not_change_the_estimate(monkeypatch):
    from genbench.metrics import ais
    model = PPCA()
    x = model.data(6)
    kw = dict(chains=4, steps=20, hmc=HMCConfig(leapfrog=3), seed=1)
    per_image = ObservationModel("gaussian", torch.tensor([0.3, 0.4, 0.5, 0.6, 0.7, 0.8]))
    whole = [ais_log_likelihood(model, obs, x, **kw)[0] for obs in (GAUSS, per_image)]
    monkeypatch.setattr(ais, "ROW_FLOATS", 4 * 6 * 2)  # two images per batch
    parts = [ais_log_likelihood(model, obs, x, **kw)[0] for obs in (GAUSS, per_image)]
    for a, b in zip(parts, whole, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    # image 2 has GAUSS's sigma 0.5 and the same noise; the others their own sigma
    torch.testing.assert_close(whole[1][2], whole[0][2], rtol=0, atol=1e-4)
    assert (whole[1][[0, 1, 3, 4, 5]] - whole[0][[0, 1, 3, 4, 5]]).abs().min() > 0.1


def test_bdmc_bounds_sandwich_the_truth():
    model = PPCA()
    res = bdmc(model, GAUSS, n=24, shape=model.shape, chains=8, steps=100,
               hmc=HMCConfig(step_size=0.1), seed=3)
    truth = model.log_px(res.x).double()
    assert float((res.lower - truth).mean()) <= 0.01
    assert float((res.upper - truth).mean()) >= -0.01
    assert 0 <= float(res.gap.mean()) < 0.5


HAIS = HMCConfig(leapfrog=1, persistence=0.9, step_size=0.1)


def test_hamiltonian_ais_meets_the_exact_likelihood():
    """Kept momentum (Hamiltonian AIS) anneals the extended target f_beta(z) N(p; 0, I): the
    weights, which see only z, must still estimate log p(x) without bias. A momentum that
    were not drawn exactly at the start, or not negated on rejection, leaves the chains off
    the annealed distributions and the estimate off the truth by more than its error."""
    model = PPCA()
    x = model.data(32)
    truth = model.log_px(x).double()
    res = _ais(model, x, 800, hmc=HAIS)
    err = res.log_mean_exp() - truth
    se = res.stderr()
    assert float((err.abs() / se).max()) < 4
    assert abs(float(err.mean())) < 3 * float(se.pow(2).sum().sqrt()) / len(se) + 0.01
    assert float(err.abs().mean()) < 0.1


def test_hamiltonian_ais_keeps_its_momentum_and_plain_hmc_does_not():
    """persistence=0 is Wu et al.'s HMC bit for bit (the momentum is drawn afresh and not
    carried); persistence > 0 changes the chains (the momentum carries over)."""
    model = PPCA()
    x = model.data(4)
    plain = _ais(model, x, 30, hmc=HMCConfig(leapfrog=1, step_size=0.1))
    fresh = _ais(model, x, 30, hmc=HMCConfig(leapfrog=1, step_size=0.1, persistence=0.0))
    kept = _ais(model, x, 30, hmc=HAIS)
    assert torch.equal(plain.log_w, fresh.log_w)
    assert not torch.equal(plain.log_w, kept.log_w)


def test_hamiltonian_bdmc_bounds_sandwich_the_truth():
    model = PPCA()
    res = bdmc(model, GAUSS, n=24, shape=model.shape, chains=8, steps=400, hmc=HAIS, seed=3)
    truth = model.log_px(res.x).double()
    assert float((res.lower - truth).mean()) <= 0.01
    assert float((res.upper - truth).mean()) >= -0.01
    assert 0 <= float(res.gap.mean()) < 0.5


def test_choose_noise_finds_the_maximum_of_the_validation_likelihood():
    """Bounded Brent in log space: not a grid point, the maximizer itself (to its tolerance);
    the exact PPCA marginal with its true s = 0.3 as the objective."""
    model = PPCA(s=0.3, inflate=1.0, shift=0.0)
    x = model.data(400)

    def exact(obs):
        cov = model.W @ model.W.T + obs.noise**2 * torch.eye(6)
        return float(MultivariateNormal(model.b, cov).log_prob(x.flatten(1)).mean())

    sigma, evaluations = choose_noise("gaussian", exact)
    from scipy.optimize import minimize_scalar
    ref = minimize_scalar(lambda s: -exact(ObservationModel("gaussian", s)), bounds=(0.01, 2),
                          method="bounded", options={"xatol": 1e-8}).x
    assert sigma == pytest.approx(ref, rel=5e-3) and abs(sigma - 0.3) < 0.05
    assert evaluations < 40
    # a maximum at a bound stays at the bound (flip: the data want no noise at all)
    flip, _ = choose_noise("bernoulli", lambda obs: -obs.noise)
    assert flip < 2e-6


def test_closed_form_log_weight_matches_torch_distributions():
    """IWAE's fast log p(z) - log q(z|x) equals the two log_prob calls, for a prior that is not
    standard too, and other families fall back to log_prob."""
    from genbench.metrics.iwae import log_prior_over_q

    gen = torch.Generator().manual_seed(0)
    loc, scale = torch.randn(3, 5, generator=gen), torch.rand(3, 5, generator=gen) + 0.2
    q = Independent(Normal(loc, scale), 1)
    eps = torch.randn(7, 3, 5, generator=gen)
    z = loc + scale * eps
    for prior in (Independent(Normal(torch.zeros(5), torch.ones(5)), 1),
                  Independent(Normal(torch.randn(5, generator=gen), torch.rand(5, generator=gen) + 0.5), 1)):
        torch.testing.assert_close(log_prior_over_q(prior, q, z, eps), prior.log_prob(z) - q.log_prob(z),
                                   atol=1e-4, rtol=1e-5)
    full = MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
    prior = Independent(Normal(torch.zeros(5), torch.ones(5)), 1)
    torch.testing.assert_close(log_prior_over_q(prior, full, z, eps), prior.log_prob(z) - full.log_prob(z))


def test_a_diverging_leapfrog_step_is_rejected_not_raised():
    """A step size far too large sends leapfrog to non-finite z; HMC must reject those
    proposals (NaN energy) rather than raise from the prior's argument validation, and the
    estimate stays a finite AIS estimate of log p(x) (a run of pure reweighting)."""
    model = PPCA()
    x = model.data(4)
    hmc = HMCConfig(leapfrog=3, step_size=1e30, min_step=1e30, max_step=1e31)
    est, accept = ais_log_likelihood(model, GAUSS, x, chains=4, steps=10, hmc=hmc, seed=0)
    assert accept == 0.0
    assert torch.isfinite(est).all()
