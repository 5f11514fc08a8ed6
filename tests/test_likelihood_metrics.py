"""Parzen window against scikit-learn, and the registered likelihood adapters end to end."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.distributions import Independent, Normal

from genbench.contract import optimizer_dict, step_model
from genbench.data import DataRequest, load_dataset
from genbench.metrics import evaluate_metrics
from genbench.metrics.context import EvalContext
from genbench.metrics.iwae import iwae_bound
from genbench.metrics.likelihood import SALT_IWAE
from genbench.metrics.parzen import choose_sigma, parzen_log_density
from genbench.metrics.sampling import seed_from
from genbench.presets import get_preset
from models.ae import AE
from models.vae import VAE

pytestmark = pytest.mark.usefixtures("one_thread")  # small tensors: see conftest


def test_parzen_matches_a_brute_force_kernel_density():
    """Against scipy's logsumexp over all pairwise distances (scikit-learn's KernelDensity
    is no reference here: its tree drops the far, tiny kernel values at small bandwidths)."""
    from scipy.special import logsumexp
    gen = torch.Generator().manual_seed(0)
    centers, x = torch.rand(300, 12, generator=gen), torch.rand(40, 12, generator=gen)
    ours = parzen_log_density(x, centers, (0.1, 0.3), chunk=64)
    d2 = ((x.double().numpy()[:, None] - centers.double().numpy()[None]) ** 2).sum(-1)
    for i, sigma in enumerate((0.1, 0.3)):
        ref = (logsumexp(-d2 / (2 * sigma**2), axis=1) - math.log(300)
               - 12 * (math.log(sigma) + 0.5 * math.log(2 * math.pi)))
        np.testing.assert_allclose(ours[i].numpy(), ref, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(parzen_log_density(x, centers, (0.1, 0.3), chunk=7), ours)


def test_parzen_one_center_is_a_gaussian_and_sigma_is_chosen_by_validation():
    x = torch.randn(5, 3, dtype=torch.float64)
    ref = Independent(Normal(torch.zeros(3, dtype=torch.float64), 0.5), 1).log_prob(x)
    torch.testing.assert_close(parzen_log_density(x, torch.zeros(1, 3), (0.5,))[0], ref)
    # validation data spread like N(0, 0.3^2 I) around the single center: sigma = 0.3 wins
    val = 0.3 * torch.randn(2000, 3, generator=torch.Generator().manual_seed(1))
    best, means = choose_sigma(val, torch.zeros(1, 3), grid=(0.1, 0.2, 0.3, 0.5, 1.0))
    assert best == 0.3 and len(means) == 5


class TinyGenerator(nn.Module):
    """A GAN-like generator: prior, generate and sample, but no decode and no encoder."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shape = shape
        self.net = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, math.prod(shape)))
        self.register_buffer("zero", torch.zeros(4))

    def prior(self):
        return Independent(Normal(self.zero, torch.ones_like(self.zero)), 1)

    def generate(self, z):
        return torch.sigmoid(self.net(z)).view(-1, *self.shape)

    def sample(self, n, generator=None):
        return self.generate(torch.randn(n, 4, generator=generator))


def _ctx(model: nn.Module, variant: str) -> EvalContext:
    data = load_dataset(DataRequest("synthetic", variant=variant))
    return EvalContext(model=model.eval(), data=data, preset=get_preset("smoke"), seed=0,
                       device=torch.device("cpu"), cache_dir=Path("."))


LIKELIHOOD = ["elbo", "iwae", "ais", "bdmc", "iwae_shared", "ais_shared", "bdmc_shared", "parzen"]


@pytest.mark.parametrize("variant", ["dynamic", "continuous"])
def test_adapters_on_vae_ae_and_a_generator(variant):
    info = load_dataset(DataRequest("synthetic", variant=variant)).info
    torch.manual_seed(0)
    vae = VAE(VAE.Config(hidden=(16,), latent_dim=4), info)
    values, na = evaluate_metrics(_ctx(vae, variant), LIKELIHOOD)
    for key in ("test_iwae", "test_ais", "test_ais_stderr", "bdmc_gap"):
        assert math.isfinite(values[key]), key
    if variant == "continuous":
        assert math.isfinite(values["parzen"]) and values["parzen_sigma"] > 0
    else:
        assert "continuous data only" in na["parzen"]
    assert values["test_iwae"] >= values["test_elbo"] - 3 * values["test_elbo_stderr"]
    assert ("obs_sigma" in values) == (variant == "continuous")
    assert ("obs_flip" in values) == (variant == "dynamic")
    for key in ("test_iwae_shared", "test_ais_shared", "bdmc_gap_shared", "test_ais_bpd"):
        assert math.isfinite(values[key]), key
    assert values["ais_converged"] in (0.0, 1.0) and values["ais_from_encoder"] == 1.0

    ae_values, ae_na = evaluate_metrics(_ctx(AE(AE.Config(hidden=(16,), latent_dim=4), info), variant),
                                        LIKELIHOOD)
    assert "test_ais" in ae_values and ae_na["test_iwae"].startswith("point-mass encoder")

    gen_values, gen_na = evaluate_metrics(_ctx(TinyGenerator(info.shape), variant), LIKELIHOOD)
    # no p(x|z) of its own: the own-model columns are n/a, the shared family scores it
    assert "test_ais" in gen_na and "test_elbo" in gen_na and "bdmc_gap" in gen_na
    assert math.isfinite(gen_values["test_ais_shared"])
    # no encoder: IWAE and AIS go through the inference network fitted on its own simulations
    assert math.isfinite(gen_values["test_iwae_shared"]) and gen_values["infer_seconds_shared"] > 0
    assert gen_values["ais_from_encoder_shared"] == 1.0
    assert ("obs_flip" if variant == "dynamic" else "obs_sigma") in gen_values


def test_ais_rejects_a_bad_init_setting():
    info = load_dataset(DataRequest("synthetic")).info
    ctx = _ctx(VAE(VAE.Config(hidden=(16,), latent_dim=4), info), "dynamic")
    ctx.preset = ctx.preset.with_overrides(ais_init="posterior")
    _, na = evaluate_metrics(ctx, ["ais"])
    assert "ais_init" in na["test_ais"]


def test_on_a_trained_vae_iwae_rises_with_k_above_the_elbo():
    """Burda et al. (2015): L_1 = ELBO <= L_k <= L_m for k <= m (in expectation)."""
    from genbench.metrics.elbo import elbo_terms
    from genbench.metrics.iwae import iwae_bound
    data = load_dataset(DataRequest("synthetic"))
    torch.manual_seed(0)
    vae = VAE(VAE.Config(hidden=(32,), latent_dim=4), data.info)
    opts = optimizer_dict(vae.configure_optimizers())
    for epoch in range(3):
        for batch in data.train_batches(64, seed=0, epoch=epoch):
            step_model(vae, batch, opts)
    vae.eval()
    x = data.eval_x("test", 64)
    recon, kl = elbo_terms(vae, x, seed=0, draws=200)
    bounds = {k: float(iwae_bound(vae, x, k=k, seed=1, chunk=512).mean()) for k in (1, 10, 100, 1000)}
    assert float((recon - kl).mean()) < bounds[10]  # the ELBO (200 draws) below L_10
    assert bounds[1] < bounds[10] < bounds[100] < bounds[1000] + 0.05


def test_ais_is_paired_with_iwae_on_its_own_images():
    """ais_minus_iwae is the per-image difference on AIS's images, not a difference of the two
    headline means (which see different numbers of images); a generator without an encoder has none."""
    info = load_dataset(DataRequest("synthetic")).info
    torch.manual_seed(0)
    ctx = _ctx(VAE(VAE.Config(hidden=(16,), latent_dim=4), info), "dynamic")
    ctx.preset = ctx.preset.with_overrides(ais_n=6, n_eval=40)
    values, _ = evaluate_metrics(ctx, ["iwae", "ais"])
    x = ctx.data.eval_x("test", 6)
    seed = seed_from(ctx.generator(SALT_IWAE))
    per_image = iwae_bound(ctx.model, x, k=ctx.preset.iwae_k, seed=seed, chunk=ctx.preset.iwae_chunk)
    assert values["ais_minus_iwae"] == pytest.approx(values["test_ais"] - float(per_image.mean()), abs=1e-4)
    assert values["ais_minus_iwae_stderr"] > 0
    # the unpaired difference is a different number: IWAE's mean is over 40 images
    assert values["test_iwae"] != pytest.approx(float(per_image.mean()), abs=1e-6)
    gen_values, _ = evaluate_metrics(_ctx(TinyGenerator(info.shape), "dynamic"), ["ais"])
    assert "ais_minus_iwae" not in gen_values


def test_an_encoder_without_a_decoder_gets_iwae_under_the_shared_family():
    """VAE-GAN has q(z|x) but no p(x|z): no own-model IWAE, and its shared-family IWAE uses the
    flip-Bernoulli its shared AIS was scored under."""
    from genbench.metrics.obsmodel import ObservationModel
    from models.vaegan import VAEGAN

    info = load_dataset(DataRequest("synthetic")).info
    torch.manual_seed(0)
    model = VAEGAN(VAEGAN.Config(**VAEGAN.presets["smoke"]), info)
    ctx = _ctx(model, "dynamic")
    values, na = evaluate_metrics(ctx, ["ais", "iwae", "ais_shared", "iwae_shared"])
    assert "test_iwae" in na and "test_ais" in na
    assert "test_iwae_shared" not in na and math.isfinite(values["test_iwae_shared"])
    x = ctx.data.eval_x("test", ctx.preset.n_eval)
    expected = iwae_bound(model, x, k=ctx.preset.iwae_k, seed=seed_from(ctx.generator(SALT_IWAE)),
                          chunk=ctx.preset.iwae_chunk, obs=ObservationModel("bernoulli", values["obs_flip"]))
    assert values["test_iwae_shared"] == pytest.approx(float(expected.mean()), abs=1e-6)
    assert math.isfinite(values["ais_minus_iwae_shared"])
