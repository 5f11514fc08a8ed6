"""The inference network of a model without an encoder, against probabilistic PCA.

PPCA (tests/ppca_plugin.py) wrapped to expose only ``prior`` and ``generate`` is a
generator like a GAN's, yet under the shared spherical Gaussian of std s its marginal is
exactly x ~ N(b, W W^T + s^2 I) and its mutual information I(z; x) is in closed form. So the
IWAE through the fitted q(z|x) must stay below the exact log-density, AIS started from q must
meet it, and q cannot read more about z from x than I(z; x).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch
from ppca_plugin import PPCA
from torch import nn
from torch.distributions import MultivariateNormal

from genbench.contract import capabilities
from genbench.data import DataRequest, load_dataset
from genbench.metrics import evaluate_metrics
from genbench.metrics.context import EvalContext
from genbench.metrics.inference import SleepBudget, finish, fit_inference, held_out_fit
from genbench.metrics.likelihood import SHARED_Q, load_per_image
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
def continuous():
    return load_dataset(DataRequest("synthetic", variant="continuous"))


@pytest.fixture(scope="module")
def generator(continuous):
    ppca = PPCA(PPCA.Config(latent_dim=5), continuous.info)
    ppca.fit(continuous.eval_x("train"))
    return GeneratorOnly(ppca).eval().requires_grad_(False)


def _ctx(model, data, run_dir: Path | None = None, **overrides) -> EvalContext:
    preset = get_preset("smoke").with_overrides(**{
        "n_eval": 40, "iwae_k": 32, "ais_n": 12, "ais_chains": 8, "bdmc_n": 6, "obs_val_n": 40,
        "infer_pairs": 1024, "infer_steps": 300, "infer_refine_steps": 100, "infer_batch": 64,
        "infer_hidden": 64, **overrides})
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
    x = continuous.eval_x("test", 40)
    exact = _exact(generator, x, sigma)
    # IWAE through any normalized q is a lower bound: per image, up to the Monte Carlo error
    # of 32 importance samples (the per-image differences' standard error)
    iwae = torch.tensor([per["test_iwae_shared"][i] for i in range(40)], dtype=torch.float64)
    diff = iwae - exact
    assert float(diff.mean()) <= 3 * float(diff.std() / math.sqrt(40)) + 1e-6
    assert float(diff.mean()) > -20  # and q is a useful proposal (the prior is ~60 nats off)
    # AIS from q (the same q: fitted once) meets the exact value within its error
    assert values["ais_from_encoder_shared"] == 1.0
    ais = torch.tensor([per["test_ais_shared"][i] for i in range(12)], dtype=torch.float64)
    ais_diff = ais - exact[:12]
    assert abs(float(ais_diff.mean())) <= 3 * float(ais_diff.std() / math.sqrt(12)) + 0.1
    assert math.isfinite(values["ais_minus_iwae_shared"])
    assert abs(values["bdmc_gap_shared"]) < 1.0
    # the fit is recorded once, identically by the three metrics, and cheap
    assert len(ctx.inference) == 1 and values["infer_seconds_shared"] == ctx.inference[SHARED_Q].seconds
    assert 0 < values["infer_seconds_shared"] < 30
    assert values["infer_gain_shared"] > 1.0


def test_the_inference_network_reads_at_most_the_mutual_information(generator, continuous):
    """E[log q(z|x) - log p(z)] <= I(z; x) = 1/2 log det(I + W^T W / s^2) (Barber & Agakov
    2003) for any normalized q; a fitted q gets close to it on a linear-Gaussian model."""
    ctx = _ctx(generator, continuous)
    evaluate_metrics(ctx, ["iwae_shared"])
    q = ctx.inference[SHARED_Q].encoder
    w = generator.ppca.W.double()
    info = 0.5 * float(torch.logdet(torch.eye(5, dtype=torch.float64) + w.T @ w / q.level**2))
    log_q, log_prior = held_out_fit(generator, "gaussian", q, 4000, seed=1)
    assert log_q - log_prior <= info + 0.3  # a few tenths: Monte Carlo error of 4,000 pairs
    assert log_q - log_prior > info - 3.0


def test_the_fit_is_a_function_of_its_seed_and_the_bound_not_of_the_chunk(generator, continuous):
    budget = SleepBudget(pairs=300, steps=40, refine_steps=10, batch=32, hidden=16, held_out=64)
    fits = [finish(fit_inference(generator, "gaussian", budget, seed=s, bounds=(1e-3, 1.0)), 0.1, budget)
            for s in (7, 7, 8)]
    weights = [[p.clone() for p in f.encoder.net.parameters()] for f in fits]
    assert all(torch.equal(a, b) for a, b in zip(weights[0], weights[1], strict=True))
    assert fits[0].log_q == fits[1].log_q
    assert not all(torch.equal(a, b) for a, b in zip(weights[0], weights[2], strict=True))
    # the same k draws per image however the work is chunked, and one fit per evaluation
    small = _ctx(generator, continuous, iwae_chunk=8)
    big = dataclasses.replace(small, preset=small.preset.with_overrides(iwae_chunk=64), results={},
                              inference={})
    a, _ = evaluate_metrics(small, ["iwae_shared"])
    b, _ = evaluate_metrics(big, ["iwae_shared"])
    assert a["obs_sigma"] == pytest.approx(b["obs_sigma"], rel=1e-6)  # float rounding of other row counts
    assert a["test_iwae_shared"] == pytest.approx(b["test_iwae_shared"], abs=1e-5)
