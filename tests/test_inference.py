"""The inference network of a model without an encoder, against probabilistic PCA.

PPCA (tests/ppca_plugin.py) wrapped to expose only ``prior`` and ``generate`` is a
generator like a GAN's, yet under the shared spherical Gaussian of std s its marginal is
exactly x ~ N(b, W W^T + s^2 I) and its mutual information I(z; x) is in closed form. So the
IWAE through the fitted q(z|x) must stay below the exact log-density, AIS started from q must
meet it, and q cannot read more about z from x than I(z; x).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from ppca_plugin import PPCA
from torch import nn
from torch.distributions import MultivariateNormal

from genbench.contract import capabilities
from genbench.metrics import evaluate_metrics
from genbench.metrics.ais import HMCConfig, ais_log_likelihood
from genbench.metrics.context import EvalContext
from genbench.metrics.inference import finish, simulate_moments
from genbench.metrics.iwae import iwae_bound
from genbench.metrics.likelihood import SHARED_Q, load_per_image
from genbench.metrics.obsmodel import ObservationModel
from genbench.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")

SHARED = ["iwae_shared", "ais_shared", "bdmc_shared"]


class GeneratorOnly(nn.Module):
    """A PPCA seen as a GAN: ``prior`` and ``generate`` (and training hooks), nothing else."""

    def __init__(self, ppca: PPCA) -> None:
        super().__init__()
        self.ppca = ppca

    def prior(self):
        return self.ppca.prior()

    def generate(self, z):
        return self.ppca.generate(z)

    def configure_optimizers(self):
        return self.ppca.configure_optimizers()

    def training_step(self, batch, *optimizers):
        return self.ppca.training_step(batch, *optimizers)


@pytest.fixture(scope="module")
def generator(ppca):
    return GeneratorOnly(ppca).eval().requires_grad_(False)


def _ctx(model, data, run_dir: Path | None = None, **overrides) -> EvalContext:
    preset = get_preset("smoke").with_overrides(**{
        "n_eval": 24, "iwae_k": 32, "ais_n": 12, "ais_chains": 8, "bdmc_n": 6, "obs_val_n": 12,
        "infer_pairs": 1024, **overrides})
    return EvalContext(model=model, data=data, preset=preset, seed=0, device=torch.device("cpu"),
                       cache_dir=Path("."), run_dir=run_dir)


def _exact(generator: GeneratorOnly, x: torch.Tensor, sigma: float) -> torch.Tensor:
    """log N(x; b, W W^T + sigma^2 I) per image, float64."""
    w, b = generator.ppca.W.double(), generator.ppca.b.double()
    cov = w @ w.T + sigma**2 * torch.eye(w.shape[0], dtype=torch.float64)
    return MultivariateNormal(b, cov).log_prob(x.flatten(1).double())


def test_a_generator_only_model_gets_iwae_and_ais_through_its_inference_network(generator, continuous,
                                                                                 tmp_path):
    assert "encode" not in capabilities(generator) and "decode" not in capabilities(generator)
    ctx = _ctx(generator, continuous, tmp_path)
    values, na = evaluate_metrics(ctx, SHARED)
    assert not na, na
    sigma = values["obs_sigma"]
    per = load_per_image(tmp_path)
    x = continuous.eval_x("test", 24)
    exact = _exact(generator, x, sigma)
    # IWAE through any normalized q is a lower bound: per image, up to the Monte Carlo error
    # of 32 importance samples (the per-image differences' standard error)
    iwae = torch.tensor([per["test_iwae_shared"][i] for i in range(24)], dtype=torch.float64)
    diff = iwae - exact
    assert float(diff.mean()) <= 3 * float(diff.std() / math.sqrt(24)) + 1e-6
    assert float(diff.mean()) > -0.05  # q is PPCA's posterior here (the prior is ~60 nats off)
    # AIS from q (the same q: fitted once) meets the exact value within its error
    assert values["ais_from_encoder_shared"] == 1.0
    ais = torch.tensor([per["test_ais_shared"][i] for i in range(12)], dtype=torch.float64)
    ais_diff = ais - exact[:12]
    assert abs(float(ais_diff.mean())) <= 3 * float(ais_diff.std() / math.sqrt(12)) + 0.02
    assert math.isfinite(values["ais_minus_iwae_shared"])
    assert abs(values["bdmc_gap_shared"]) < 0.05
    # the fit is recorded once, identically by the three metrics, and cheap
    assert len(ctx.inference) == 1 and values["infer_seconds_shared"] == ctx.inference[SHARED_Q].seconds
    assert 0 < values["infer_seconds_shared"] < 30
    assert values["infer_gain_shared"] > 1.0


def test_the_fit_is_the_exact_posterior_of_ppca_and_any_q_keeps_the_bounds(generator, continuous):
    """The linear-Gaussian fit on PPCA's simulations is its posterior: E[log q(z|x) - log p(z)]
    meets I(z; x) = 1/2 log det(I + W^T W / s^2), a bound no normalized q can pass (Barber &
    Agakov 2003). A q fitted at the wrong level (3 s) is still a valid proposal: IWAE falls
    below the exact log-density, and AIS from it climbs back to it."""
    sigma = 0.15
    moments = simulate_moments(generator, "gaussian", 2000, seed=0)
    fit = finish(moments, generator, sigma, seed=1, held_out=4000)
    w = generator.ppca.W.double()
    info = 0.5 * float(torch.logdet(torch.eye(5, dtype=torch.float64) + w.T @ w / sigma**2))
    assert abs(fit.log_q - fit.log_prior - info) < 0.3  # Monte Carlo error of 4,000 pairs: ~0.05
    obs = ObservationModel("gaussian", sigma)
    x = continuous.eval_x("test", 12)
    exact = _exact(generator, x, sigma)
    wrong = moments.at(3 * sigma)
    iwae = iwae_bound(generator, x, k=16, seed=2, chunk=64, obs=obs, encoder=wrong)
    gap = iwae - exact  # each image's estimate is random: a bound in expectation
    assert float(gap.mean()) <= 3 * float(gap.std()) / math.sqrt(12)  # a lower bound, up to its error
    assert -5 < float(gap.mean()) < -0.5  # and visibly loose (k = 16), unlike the fitted level's
    ais, _ = ais_log_likelihood(generator, obs, x, chains=8, steps=60, hmc=HMCConfig(leapfrog=5),
                                seed=3, from_encoder=wrong)
    diff = ais - exact
    assert abs(float(diff.mean())) <= 3 * float(diff.std()) / math.sqrt(12) + 0.05


def test_the_fit_is_a_function_of_its_seed_and_the_bound_not_of_the_chunk(generator, continuous):
    fits = [finish(simulate_moments(generator, "gaussian", 300, seed=s), generator, 0.1, seed=1)
            for s in (7, 7, 8)]
    assert torch.equal(fits[0].encoder.gain, fits[1].encoder.gain) and fits[0].log_q == fits[1].log_q
    assert torch.equal(fits[0].encoder.scale_tril, fits[1].encoder.scale_tril)
    assert not torch.equal(fits[0].encoder.gain, fits[2].encoder.gain)
    # the same k draws per image however the work is chunked (IWAE and the noise choice)
    small = _ctx(generator, continuous, iwae_chunk=8)
    big = dataclasses.replace(small, preset=small.preset.with_overrides(iwae_chunk=64), results={},
                              inference={})
    a, _ = evaluate_metrics(small, ["iwae_shared"])
    b, _ = evaluate_metrics(big, ["iwae_shared"])
    assert a["obs_sigma"] == pytest.approx(b["obs_sigma"], rel=1e-6)  # float rounding of other row counts
    assert a["test_iwae_shared"] == pytest.approx(b["test_iwae_shared"], abs=1e-5)


class TinyGenerator(nn.Module):
    """A nonlinear generator on 1x2x3 images with a 2-d latent: prior and generate only."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a, self.b = 2 * torch.randn(6, 2, generator=gen), torch.randn(6, generator=gen)

    def prior(self):
        return torch.distributions.Independent(torch.distributions.Normal(torch.zeros(2), torch.ones(2)), 1)

    def generate(self, z):
        return torch.sigmoid(z @ self.a.T + self.b).view(-1, 1, 2, 3)


@pytest.mark.parametrize(("kind", "level"), [("gaussian", 0.2), ("bernoulli", 0.05)])
def test_the_closed_form_fit_is_least_squares_on_simulated_images(kind, level):
    """The noise integrated out in closed form gives the regression of z on x that 400,000
    drawn images give (Monte Carlo error ~0.01), for both shared families."""
    model = TinyGenerator()
    moments = simulate_moments(model, kind, 400, seed=0)
    q = moments.at(level)
    z = _prior_draws_like(moments, model)
    m = ObservationModel(kind).simulation_params(model, z).repeat(1000, 1)
    x = ObservationModel(kind, level).draw(m, torch.Generator().manual_seed(1)).double()
    zr = z.double().repeat(1000, 1)
    zc, xc = zr - zr.mean(0), x - x.mean(0)
    czx, cxx = zc.T @ xc / len(x), xc.T @ xc / len(x)
    gain = torch.linalg.solve(cxx, czx.T).T
    sigma = zc.T @ zc / len(x) - gain @ czx.T
    torch.testing.assert_close(q.gain.double(), gain, atol=0.03, rtol=0.03)
    torch.testing.assert_close(q.scale_tril.double() @ q.scale_tril.double().T, sigma, atol=0.01, rtol=0.03)


def _prior_draws_like(moments, model) -> torch.Tensor:
    """The codes simulate_moments decoded (same seed, same generator)."""
    from genbench.metrics.inference import _generator, _prior_draws
    return _prior_draws(model, moments.pairs, _generator(torch.device("cpu"), 0))


def test_an_own_bernoulli_decoder_without_an_encoder_anneals_from_the_inference_network(tmp_path):
    """The AE has a Bernoulli decoder of its own and no density encoder: its own AIS (and the
    BDMC that certifies it, from the same start) anneal from the inference network refitted
    at the flip's lower bound, not from the prior. AIS is exact from any start whose density
    it knows, so both starts estimate the same log p(x) within their errors (a start density
    that were off by a constant would shift the estimate by it)."""
    from typer.testing import CliRunner

    from genbench.cli import app

    got = {}
    for init in ("encoder", "prior"):
        out = CliRunner().invoke(app, ["run", "ae", "--dataset", "synthetic", "--preset", "smoke",
                                       "--device", "cpu", "--results", str(tmp_path / init),
                                       "--metrics", "ais,bdmc", "--set", f"ais_init={init}"])
        assert out.exit_code == 0, out.output
        got[init] = json.loads(next((tmp_path / init).glob("synthetic/ae/*/metrics.json")).read_text())
    assert got["encoder"]["ais_from_encoder"] == 1.0 and got["prior"]["ais_from_encoder"] == 0.0
    assert got["encoder"]["ais_certified"] == 1.0
    se = (got["encoder"]["test_ais_stderr"] ** 2 + got["prior"]["test_ais_stderr"] ** 2) ** 0.5
    assert abs(got["encoder"]["test_ais"] - got["prior"]["test_ais"]) < 3 * se
