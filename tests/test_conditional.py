"""Conditional models (CVAE, M2), their classification metric and the analogies grid."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy.special import expit, log_softmax

from genbench.contract import optimizer_dict, sample_from, step_model
from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.galleries.analogies import (
    analogies_grid,
    analogy_images,
    attribute_analogy_images,
    dataset_analogies,
)
from genbench.metrics.classification import (
    classification_metric,
    error_rate,
    labelled_subset,
    predict_classes,
)
from genbench.metrics.context import EvalContext
from genbench.plugins import load_plugins
from genbench.presets import get_preset
from genbench.registry import get_model

load_plugins()
CVAE = get_model("cvae").cls
M2 = get_model("m2").cls


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: see conftest


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataRequest("synthetic"))


@pytest.fixture(scope="module")
def rgb():
    return load_dataset(DataRequest("synthetic-rgb"))


@pytest.fixture(scope="module")
def rgb_cvae(rgb):
    torch.manual_seed(0)
    return CVAE(CVAE.Config(hidden=(16,), latent_dim=4), rgb.info)


def tiny_cvae(info, latent_dim: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return CVAE(CVAE.Config(hidden=(3,), latent_dim=latent_dim), info).double()


def small_m2(info, **changes) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = dict(hidden=(32,), classifier_hidden=(32,), latent_dim=4, lr=3e-3, labels=100)
    cfg.update(changes)
    return M2(M2.Config(**cfg), info)


def _linears(module: torch.nn.Module) -> list[np.ndarray]:
    return [(m.weight.detach().numpy(), None if m.bias is None else m.bias.detach().numpy())
            for m in module.modules() if isinstance(m, torch.nn.Linear)]


# -- CVAE: the conditional ELBO ---------------------------------------------------------
def test_cvae_elbo_matches_hand_computation(data):
    """Forward pass of a 784+10 -> 3 -> 2x2 / 2+10 -> 3 -> 784 network by hand in numpy:
    the closed-form KL (Kingma & Welling, App. B) and the Bernoulli log-likelihood at
    z = mu + sigma * eps for fixed eps."""
    model = tiny_cvae(data.info)
    x = data.eval_x("test", 4).double()
    y = data.eval_y("test", 4)
    eps = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    recon, kl = model.loss_terms(x, y, eps=eps)

    (wx, bx), (wy, _), (w2, b2) = _linears(model.encoder)
    (w3, b3), (w4, b4) = _linears(model.decoder)
    xf, onehot, e = x.reshape(4, -1).numpy(), np.eye(10)[y.numpy()], eps.numpy()
    h = np.maximum(0, xf @ wx.T + bx + onehot @ wy.T)  # first layer on concat(x, y)
    mu, logvar = np.split(h @ w2.T + b2, 2, axis=1)
    z = mu + np.exp(0.5 * logvar) * e
    logits = np.maximum(0, np.concatenate([z, onehot], 1) @ w3.T + b3) @ w4.T + b4
    p = expit(logits)
    hand_recon = (xf * np.log(p) + (1 - xf) * np.log1p(-p)).sum(1)
    hand_kl = 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(1)
    np.testing.assert_allclose(recon.detach().numpy(), hand_recon, rtol=1e-10)
    np.testing.assert_allclose(kl.detach().numpy(), hand_kl, rtol=1e-10)


def test_cvae_recon_term_matches_quadrature(data):
    """With a 1-D latent, E_q(z|x,y)[log p(x|z,y)] by Gauss-Hermite quadrature over the
    distributions encode/decode return equals the mean of the training draws."""
    model = tiny_cvae(data.info, latent_dim=1)
    x, y = data.eval_x("test", 2).double(), data.eval_y("test", 2)
    with torch.no_grad():
        q = model.encode(x, y=y)
        nodes, weights = np.polynomial.hermite_e.hermegauss(40)  # for N(0, 1)
        z = q.mean + q.stddev * torch.tensor(nodes)[:, None, None]  # (40, 2, 1)
        logp = model.decode(z, y=y).log_prob(x)  # (40, 2): labels shared over the nodes
        quad = (torch.tensor(weights)[:, None] * logp).sum(0) / weights.sum()
        draws = 4000
        recon, _ = model.loss_terms(x.repeat(draws, 1, 1, 1), y.repeat(draws))
        mc = recon.view(draws, 2)
    np.testing.assert_allclose(mc.mean(0).numpy(), quad.numpy(),
                               atol=float(4 * mc.std(0).max() / draws**0.5))


def test_cvae_label_changes_the_decoder_and_needs_y(data):
    model = tiny_cvae(data.info)
    z = torch.zeros(2, 2, dtype=torch.float64)
    a = model.generate(z, y=torch.tensor([0, 0]))
    b = model.generate(z, y=torch.tensor([0, 5]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with pytest.raises(GenbenchError, match="conditional"):
        model.encode(data.eval_x("test", 2).double())


def test_cvae_agrees_with_the_elbo_metric(data):
    """The likelihood engineer's ELBO, given y, uses the same closed-form KL."""
    elbo = pytest.importorskip("genbench.metrics.elbo")
    model = tiny_cvae(data.info).float()
    x, y = data.eval_x("test", 8), data.eval_y("test", 8)
    recon, kl = elbo.elbo_terms(model, x, y, seed=3, draws=4, chunk=3)
    _, kl_train = model.loss_terms(x, y)
    torch.testing.assert_close(kl, kl_train.detach())
    assert torch.isfinite(recon).all()


@pytest.mark.parametrize("name", ["cvae", "m2"])
def test_sample_with_and_without_labels(data, name):
    model = tiny_cvae(data.info).float() if name == "cvae" else small_m2(data.info)
    gen = torch.Generator().manual_seed(0)
    x = sample_from(model, 7, gen, y=torch.arange(7) % 10)
    assert x.shape == (7, 1, 28, 28) and x.min() >= 0 and x.max() <= 1
    assert sample_from(model, 5, gen).shape == (5, 1, 28, 28)


def test_cvae_one_training_step_and_attributes(rgb, rgb_cvae):
    model = rgb_cvae
    model.on_train_start(rgb)
    torch.testing.assert_close(model.attribute_freq, rgb.train.y.float().mean(0))
    batch = next(rgb.train_batches(4, seed=0, epoch=0))
    stats = step_model(model, batch, optimizer_dict(model.configure_optimizers()))
    assert all(torch.isfinite(v) for v in stats.values())
    assert sample_from(model, 3).shape == (3, 3, 64, 64)


# -- M2: labelled subset, bounds, training ----------------------------------------------
def test_labelled_subset_is_balanced_and_fixed_by_seed(data):
    from genbench_models.m2 import balanced_subset

    y = data.train.y
    a = balanced_subset(y, 100, 10, seed=0)
    assert torch.equal(torch.bincount(y[a], minlength=10), torch.full((10,), 10))
    assert len(set(a.tolist())) == 100
    assert torch.equal(a, balanced_subset(y, 100, 10, seed=0))
    assert not torch.equal(a, balanced_subset(y, 100, 10, seed=1))
    with pytest.raises(GenbenchError, match="multiple"):
        balanced_subset(y, 105, 10, seed=0)
    with pytest.raises(GenbenchError, match="fewer"):
        balanced_subset(y, 1000, 10, seed=0)


def test_m2_stores_its_labelled_subset_in_the_checkpoint(data):
    model = small_m2(data.info)
    model.on_train_start(data)
    assert model.labelled_counts().tolist() == [10] * 10
    assert torch.equal(model.labelled_y, data.train.y[model.labelled_index])
    assert torch.equal(model.labelled_x, data.train.x[model.labelled_index])
    fresh = small_m2(data.info)
    fresh.load_state_dict(model.state_dict())
    assert torch.equal(fresh.labelled_index, model.labelled_index)


def test_m2_unlabelled_bound_sums_over_labels(data, monkeypatch):
    """U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)) (eq. 7), checked label by label with the
    reparameterization noise set to zero so both sides are deterministic."""
    model = small_m2(data.info).double()
    x = data.eval_x("test", 5).double()
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    with torch.no_grad():
        u = model.unlabelled_bound(x)
        bounds = torch.stack([model.labelled_bound(x, torch.full((5,), k)) for k in range(10)], 1)
        log_q = log_softmax(model.classifier(x).numpy(), axis=1)
    q = np.exp(log_q)
    expected = (q * bounds.numpy()).sum(1) - (q * log_q).sum(1)
    np.testing.assert_allclose(u.numpy(), expected, rtol=1e-10)


@pytest.mark.parametrize("weighting", ["paper", "balanced"])
def test_m2_objective_weighs_its_parts_as_documented(data, monkeypatch, weighting):
    """The step objective against a hand sum of its parts on a tiny batch: paper weighting is
    J^alpha / N = (N_l/N) L + alpha log q + (N_u/N) U; balanced gives the labelled and the
    unlabelled batch weight 1 and the classifier alpha N_u / N_l (Wohlert's re-implementation)."""
    model = small_m2(data.info, weighting=weighting, alpha=0.1).double()
    model.on_train_start(data)
    n, n_l = len(data.train), 100
    x_l, y_l = data.eval_x("train", 6).double(), data.eval_y("train", 6)
    monkeypatch.setattr(model, "labelled_batch", lambda: (x_l, y_l))
    monkeypatch.setattr(torch, "randn_like", torch.zeros_like)
    batch = next(data.train_batches(8, seed=0, epoch=0))
    batch = dataclasses.replace(batch, x=batch.x.double())
    unlabelled = ~torch.isin(batch.index, model.labelled_index)
    with torch.no_grad():
        parts = model.objective(batch)
        bound_l = model.labelled_bound(x_l, y_l).mean()
        log_q = torch.log_softmax(model.classifier(x_l), -1)[torch.arange(6), y_l].mean()
        bound_u = model.unlabelled_bound(batch.x[unlabelled]).mean()
    weights = ((n_l / n, 0.1, (n - n_l) / n) if weighting == "paper"
               else (1.0, 0.1 * (n - n_l) / n_l, 1.0))
    expected = weights[0] * bound_l + weights[1] * log_q + weights[2] * bound_u
    torch.testing.assert_close(parts["objective"], expected)
    torch.testing.assert_close(parts["class_nll"], -log_q)
    assert model.objective_weights() == pytest.approx(weights)


def test_m2_presets_and_kl_warmup(data):
    """quick trains with the balanced weighting (the paper's 1:40 loses to supervised-only on
    mnist-5k); paper keeps the paper's; a warm-up reaches the bound after ``kl_warmup`` epochs."""
    assert M2.presets["quick"]["weighting"] == "balanced"
    assert M2.presets["paper"].get("weighting", M2.Config.weighting) == "paper"
    model = small_m2(data.info, kl_warmup=3)
    weights = [float(model.kl_weight)]
    for epoch in range(4):
        model.on_epoch_end(epoch, {})
        weights.append(float(model.kl_weight))
    assert weights == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert float(small_m2(data.info).kl_weight) == 1.0
    with pytest.raises(GenbenchError, match="weighting"):
        small_m2(data.info, weighting="equal")


def test_m2_trains_and_its_classifier_improves(data):
    model = small_m2(data.info, hidden=(16,), classifier_hidden=(16,), alpha=1.0)
    model.on_train_start(data)
    opts = optimizer_dict(model.configure_optimizers())
    x_l = data.train.x[model.labelled_index].float() / 255
    with torch.no_grad():
        before = -model.classify(x_l).log_prob(model.labelled_y).mean()
    for epoch in range(4):
        for batch in data.train_batches(64, seed=0, epoch=epoch):
            stats = step_model(model, batch, opts)
            assert all(torch.isfinite(v) for v in stats.values())
    with torch.no_grad():
        after = -model.classify(x_l).log_prob(model.labelled_y).mean()
    err, _ = error_rate(predict_classes(model, data.eval_x("test")), data.eval_y("test"))
    assert after < before - 0.3
    assert err < 0.7  # chance is 0.9


def test_m2_without_labelled_subset_says_what_to_do(data):
    model = small_m2(data.info)
    batch = next(data.train_batches(8, seed=0, epoch=0))
    with pytest.raises(GenbenchError, match="on_train_start"):
        step_model(model, batch, optimizer_dict(model.configure_optimizers()))


# -- the classification metric ----------------------------------------------------------
def test_error_rate_and_chunking():
    pred, y = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 0, 0])
    err, se = error_rate(pred, y)
    assert err == 0.5 and se == pytest.approx((0.25 / 4) ** 0.5)
    with pytest.raises(ValueError):
        error_rate(pred, y[:3])


def test_classification_metric_records_the_labelled_subset(data, tmp_path):
    model = small_m2(data.info)
    model.on_train_start(data)
    model.eval()
    x = data.eval_x("test")
    assert torch.equal(predict_classes(model, x, chunk=7), predict_classes(model, x, chunk=1000))
    ctx = EvalContext(model=model, data=data, preset=get_preset("smoke"), seed=0,
                      device=torch.device("cpu"), cache_dir=tmp_path, run_dir=tmp_path)
    out = classification_metric(ctx)
    assert 0 <= out["test_error"] <= 1 and out["test_error_stderr"] > 0
    assert out["labelled_examples"] == 100
    assert out["labelled_per_class_min"] == out["labelled_per_class_max"] == 10
    assert list(tmp_path.iterdir()) == []  # a metric never writes into the run folder
    record = labelled_subset(model)
    assert record["per_class"] == [10] * 10 and len(record["train_indices"]) == 100
    assert labelled_subset(tiny_cvae(data.info)) is None
    from genbench.evaluation import evaluate_model  # the evaluator writes the record

    evaluate_model(model, data, get_preset("smoke"), seed=0, device=torch.device("cpu"),
                   names=("classification",), run_dir=tmp_path)
    assert json.loads((tmp_path / "labelled_subset.json").read_text()) == record


# -- analogies ----------------------------------------------------------------------------
def test_analogies_grid_keeps_one_z_per_row(data):
    model = tiny_cvae(data.info).float().eval()
    x, y = data.eval_x("test", 3), data.eval_y("test", 3)
    images = analogy_images(model, x, y, 10)
    assert images.shape == (3, 10, 1, 28, 28)
    z = model.encode(x, y=y).mean
    for i in range(3):
        same_z = model.generate(z[i : i + 1].expand(10, -1), y=torch.arange(10))
        torch.testing.assert_close(images[i], same_z)
    assert not torch.allclose(images[0, 0], images[0, 1])  # the label changes the image
    grid = analogies_grid(model, x, y)
    assert grid.shape == (3, 2 + 3 * 30, 2 + 11 * 30)  # rows of [input | 10 labels]
    assert dataset_analogies(model, data.eval_x("test"), data.eval_y("test")).shape == (
        3, 2 + 10 * 30, 2 + 11 * 30)


def test_attribute_analogies_flip_one_attribute(rgb, rgb_cvae):
    model = rgb_cvae.eval()
    x, a = rgb.eval_x("test", 2), rgb.eval_y("test", 2)
    images = attribute_analogy_images(model, x, a, [0, 3])
    assert images.shape == (2, 3, 3, 64, 64)
    with torch.no_grad():
        z = model.encode(x, y=a).mean
        flipped = a.clone()
        flipped[:, 3] = 1 - flipped[:, 3]
        torch.testing.assert_close(images[:, 0], model.generate(z, y=a))
        torch.testing.assert_close(images[:, 2], model.generate(z, y=flipped))
    grid = analogies_grid(model, x, a)  # dispatches on attribute labels
    assert grid.shape[0] == 3 and grid.shape[1] == 2 + 2 * 66
