"""JMVAE: the JMVAE-kl objective, p(y|z) against torch.distributions, edits, capabilities."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal

from genbench.contract import Batch, capabilities, step_model
from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.plugins import load_plugins
from genbench.registry import get_model

load_plugins()
JMVAE = get_model("jmvae").cls


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: see conftest


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    import os

    old = os.environ.get("GENBENCH_CACHE")
    os.environ["GENBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    try:
        return load_dataset(DataRequest("synthetic-morpho"))
    finally:
        if old is None:
            os.environ.pop("GENBENCH_CACHE")
        else:
            os.environ["GENBENCH_CACHE"] = old


def small(info, **changes):
    torch.manual_seed(0)
    return JMVAE(JMVAE.Config(**{"hidden": (32,), "latent_dim": 4, **changes}), info)


def batch_of(data, n=16):
    index = torch.arange(n)
    return Batch(x=data.eval_x("train")[:n], y=data.train.y[:n], index=index)


def test_capabilities_x_only_encoder_and_edit(data):
    caps = capabilities(small(data.info))
    assert {"encode", "density_encoder", "decode", "generate", "prior", "sample", "edit"} <= caps
    assert "condition" not in caps  # encode(x) is q(z|x): likelihoods are log p(x)


def test_y_log_prob_matches_torch_distributions(data):
    model = small(data.info)
    model.on_train_start(data)
    feat = model.features(data.train.y[:8], data.train.measures[:8])
    params = torch.randn(8, feat.shape[1])
    k = model.classes
    expected = (Categorical(logits=params[:, :k]).log_prob(data.train.y[:8])
                + Normal(params[:, k:], model.y_log_std.exp()).log_prob(feat[:, k:]).sum(1))
    assert torch.allclose(model.y_log_prob(params, feat), expected.detach(), atol=1e-5)
    # measures enter standardized by the training mean and sd
    z = feat[:, k:]
    assert torch.allclose(z, (data.train.measures[:8] - data.train.measures.mean(0))
                          / data.train.measures.std(0), atol=1e-5)


def test_bernoulli_attributes_log_prob():
    rgb = load_dataset(DataRequest("synthetic-rgb"))
    model = small(rgb.info)
    feat = model.features(rgb.train.y[:4], None)
    params = torch.randn(4, 40)
    expected = Bernoulli(logits=params).log_prob(feat).sum(1)
    assert torch.allclose(model.y_log_prob(params, feat), expected, atol=1e-5)


def test_objective_weights_alpha(data):
    """loss = -(recon_x + recon_y - KL(q(z|x,y)||p) - alpha (KL to q(z|x) + KL to q(z|y)))."""
    for alpha in (0.0, 0.5, 2.0):
        model = small(data.info, alpha=alpha)
        model.on_train_start(data)
        torch.manual_seed(1)
        out = model.training_step(batch_of(data))
        t = {k: float(out[k].detach()) for k in ("recon_x", "recon_y", "kl", "kl_x", "kl_y")}
        expected = -(t["recon_x"] + t["recon_y"] - t["kl"] - alpha * (t["kl_x"] + t["kl_y"]))
        assert float(out["loss"].detach()) == pytest.approx(expected, rel=1e-5)
        assert t["kl_x"] > 0 and t["kl_y"] > 0  # distinct encoders at initialisation


def train(data, epochs=5, **changes):
    model = small(data.info, **changes)
    model.on_train_start(data)
    opt = {"optimizer": model.configure_optimizers()}
    torch.manual_seed(2)
    for epoch in range(epochs):
        for b in data.train_batches(64, seed=0, epoch=epoch):
            step_model(model, b, opt)
    with torch.no_grad():
        torch.manual_seed(3)
        return model, model.training_step(batch_of(data, 200))


def test_alpha_pulls_unimodal_encoders_onto_the_joint_one(data):
    _, free = train(data, alpha=0.0)
    _, pulled = train(data, alpha=1.0)
    assert float(pulled["kl_x"]) < 0.5 * float(free["kl_x"])
    assert float(pulled["kl_y"]) < 0.5 * float(free["kl_y"])
    assert float(free["kl"]) > 1.0  # the joint posterior did move away from the prior


def test_zero_edit_is_the_joint_reconstruction_and_edits_move(data):
    model = small(data.info).eval()
    model.on_train_start(data)
    x, y, m = data.eval_x("test")[:6], data.test.y[:6], data.test.measures[:6]
    recon = model.generate(model.encode_joint(x, y, m).mean)
    assert torch.allclose(model.edit(x, "thickness", 0.0, y=y, measures=m), recon)
    assert not torch.allclose(model.edit(x, "thickness", 2.0, y=y, measures=m), recon)
    # without labels and measures the model infers the one and measures the other
    assert model.edit(x, "slant", 1.0).shape == x.shape
    with pytest.raises(GenbenchError, match="cannot edit 'smile'"):
        model.edit(x, "smile", 1.0, y=y, measures=m)


def test_celeba_shaped_attributes_train_and_edit():
    rgb = load_dataset(DataRequest("synthetic-rgb"))
    model = small(rgb.info)
    model.on_train_start(rgb)
    opt = {"optimizer": model.configure_optimizers()}
    b = next(rgb.train_batches(8, seed=0, epoch=0))
    stats = step_model(model, b, opt)
    assert torch.isfinite(stats["loss"])
    model.eval()
    out = model.edit(rgb.eval_x("test")[:3], "attr3", 1.0, y=rgb.test.y[:3])
    assert out.shape == (3, 3, 64, 64)
    assert "attr0" in model.attribute_names


def test_needs_labels_or_measures():
    from genbench.contract import DataInfo

    with pytest.raises(GenbenchError, match="has none"):
        JMVAE(JMVAE.Config(), DataInfo("plain", "dynamic", (1, 28, 28)))


def test_celeba_layout_jmvae_edits_and_lapgan_64(tmp_path, monkeypatch):
    """The CelebA path on generated files in torchvision's layout: JMVAE over the 40
    attributes with edits measured by the attribute classifier; LAPGAN's 8-16-32-64 pyramid."""
    import csv

    from test_data import write_celeba

    from genbench.training import RunSpec, execute, plan_run

    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    write_celeba(tmp_path / "data", n=24)
    outcomes = {}
    for name, metrics in (("jmvae", ("edits",)), ("lapgan", ("quality",))):
        spec = RunSpec(model=name, dataset="celeba", data_dir=str(tmp_path / "data"),
                       preset="smoke", epochs=1, results=tmp_path / "results", device="cpu",
                       metrics=metrics)
        outcomes[name] = execute(plan_run(spec))
        assert outcomes[name].status == "finished", outcomes[name].message
    m = outcomes["jmvae"].metrics
    for a in ("attr_0", "attr_3"):  # no Smiling here: the first four attributes are edited
        assert -1 <= m[f"edit_corr_{a}"] <= 1 and f"edit_slope_{a}" in m
    assert m["edit_entanglement"] >= 0
    rows = list(csv.DictReader((outcomes["lapgan"].run_dir / "history.csv").open()))
    assert "d_loss_3" in rows[0]  # four levels: 8, 16, 32, 64


def test_joint_hooks_normalized_labels_and_measures_marginalized(data):
    """label_log_prob is a distribution over the classes, equal to the training log p(y|z)
    without the measures' Gaussian factor; on measured data q(z|y) alone is the prior."""
    model = small(data.info)
    model.on_train_start(data)
    assert "joint" in capabilities(model)
    z = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    per_class = torch.stack([model.label_log_prob(z, torch.full((5,), c)) for c in range(model.classes)])
    torch.testing.assert_close(per_class.logsumexp(0), torch.zeros(3, 5), atol=1e-5, rtol=0)
    y, m = data.train.y[:5], data.train.measures[:5]
    feat, params, k = model.features(y, m), model.y_decoder(z[0]), model.classes
    gauss = Normal(params[:, k:], model.y_log_std.exp()).log_prob(feat[:, k:]).sum(1)
    torch.testing.assert_close(model.label_log_prob(z[:1], y)[0], model.y_log_prob(params, feat) - gauss)
    q = model.encode_labels(y)
    assert q.batch_shape == (5,) and torch.equal(q.mean, torch.zeros(5, 4))
    assert model.encode_joint(data.eval_x("train")[:5], y, m).batch_shape == (5,)


def test_label_encoder_without_measures_is_q_z_given_y():
    info = load_dataset(DataRequest("synthetic")).info
    model = small(info)
    y = torch.arange(4) % info.num_classes
    q = model.encode_labels(y)
    expected = model.y_encoder(torch.nn.functional.one_hot(y, info.num_classes).float()).chunk(2, -1)[0]
    torch.testing.assert_close(q.mean, expected)
