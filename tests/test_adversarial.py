"""GAN, DCGAN and VAE-GAN: one training step, who updates what, resume, divergence, runner."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from interrupt import interrupt_at_batch

from genbench.adversarial import check_discriminator, discriminator_stats
from genbench.contract import Batch, DataInfo, capabilities, sample_from
from genbench.errors import Diverged
from genbench.registry import get_model

NAMES = ("gan", "dcgan", "vaegan")
NETWORKS = {"gan": ("discriminator", "generator"), "dcgan": ("discriminator", "generator"),
            "vaegan": ("encoder", "decoder", "discriminator")}
MNIST = DataInfo("synthetic", "dynamic", (1, 28, 28), num_classes=10)


@pytest.fixture(autouse=True)
def _setup(plugins_loaded) -> Iterator[None]:
    """The bundled models registered; one thread, because these networks are tiny and on a
    busy 2-core machine a second OpenMP thread makes each op wait (30 s for a 10 s run)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, info: DataInfo = MNIST, **changes) -> torch.nn.Module:
    """The smoke-preset model (dropout off unless asked: it would draw from the RNG)."""
    cls = get_model(name).cls
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    values = {k: v for k, v in cls.presets["smoke"].items() if k in fields}
    if "d_dropout" in fields:
        values["d_dropout"] = 0.0
    return cls(cls.Config(**{**values, **changes}), info)


def batch(n: int = 16, info: DataInfo = MNIST, seed: int = 1) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    return Batch(torch.rand((n, *info.shape), generator=gen).bernoulli(generator=gen))


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.detach().clone() for k, p in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> set[str]:
    return {k for k, p in module.named_parameters() if not torch.equal(before[k], p)}


# -- one step ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_training_step_gives_finite_detached_stats_and_moves_every_network(name: str) -> None:
    model = build(name)
    opts = model.configure_optimizers()
    assert set(opts) == set(NETWORKS[name])
    before = {net: params(getattr(model, net)) for net in NETWORKS[name]}
    out = model.training_step(batch(), opts)
    assert {"d_loss", "g_loss", "d_real", "d_fake"} <= set(out)
    for key, v in out.items():
        assert v.dim() == 0 and not v.requires_grad and math.isfinite(v.item()), key
    assert 0 < out["d_real"] < 1 and 0 < out["d_fake"] < 1
    for net in NETWORKS[name]:
        assert changed(before[net], getattr(model, net)) == set(before[net]), net
    if name == "vaegan":
        assert out["kl"] > 0 and out["feature_recon"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_optimizers_partition_the_parameters(name: str) -> None:
    model = build(name)
    owned = [id(p) for opt in model.configure_optimizers().values()
             for group in opt.param_groups for p in group["params"]]
    assert sorted(owned) == sorted(id(p) for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_each_network_moves_only_through_its_own_optimizer(name: str) -> None:
    for mover in NETWORKS[name]:
        torch.manual_seed(0)
        model = build(name)
        opts = model.configure_optimizers()
        for key, opt in opts.items():  # freeze every network but ``mover`` via its own lr
            for group in opt.param_groups:
                group["lr"] = group["lr"] if key == mover else 0.0
        before = {net: params(getattr(model, net)) for net in NETWORKS[name]}
        model.training_step(batch(), opts)
        for net in NETWORKS[name]:
            moved = changed(before[net], getattr(model, net))
            assert bool(moved) == (net == mover), (mover, net, sorted(moved))


class Recorder:
    """Stands in for an optimizer: records the gradients it would have applied."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.params = list(module.parameters())
        self.grads: list[torch.Tensor] | None = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        self.grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in self.params]


def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    """-log sigmoid(l) for target 1, -log(1 - sigmoid(l)) for 0: written out, not shared code."""
    return -(F.logsigmoid(logits) if target == 1 else F.logsigmoid(-logits)).mean()


def assert_grads(recorder: Recorder, loss: torch.Tensor) -> None:
    want = torch.autograd.grad(loss, recorder.params, retain_graph=True)
    assert recorder.grads is not None
    for got, ref in zip(recorder.grads, want, strict=True):
        torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-5)  # float noise


@pytest.mark.parametrize("name", ["gan", "dcgan"])
def test_d_follows_its_loss_and_g_the_non_saturating_loss(name: str) -> None:
    """D's gradient is that of -[log D(x) + log(1 - D(G(z)))]; G's that of -log D(G(z))
    (Goodfellow et al. 2014), and G's step leaves no gradient on D."""
    model, b = build(name), batch()
    rec = {"discriminator": Recorder(model.discriminator), "generator": Recorder(model.generator)}
    torch.manual_seed(7)
    model.training_step(b, rec)
    d_grads_after = [p.grad.clone() for p in model.discriminator.parameters()]
    torch.manual_seed(7)
    z = torch.randn(b.x.shape[0], model.config.latent_dim)
    to_d = (lambda t: t * 2 - 1) if name == "dcgan" else (lambda t: t)  # DCGAN's D sees [-1, 1]
    fake = to_d(model.generate(z))
    d_loss = bce(model.discriminator(to_d(b.x)), 1) + bce(model.discriminator(fake.detach()), 0)
    assert_grads(rec["discriminator"], d_loss)
    assert_grads(rec["generator"], bce(model.discriminator(fake), 1))
    for got, ref in zip(d_grads_after, rec["discriminator"].grads, strict=True):
        assert torch.equal(got, ref)  # the G step added nothing to D's gradients


def test_vaegan_networks_follow_the_losses_of_larsen_et_al() -> None:
    """encoder: KL + Dis_l recon; decoder: gamma * Dis_l recon + GAN; D: GAN only."""
    model, b = build("vaegan", gamma=0.3), batch()
    rec = {net: Recorder(getattr(model, net)) for net in NETWORKS["vaegan"]}
    torch.manual_seed(7)
    model.training_step(b, rec)
    torch.manual_seed(7)
    t = model.losses(b.x)
    assert_grads(rec["encoder"], t["kl"] + t["feature_recon"])
    assert_grads(rec["decoder"], 0.3 * t["feature_recon"] + t["g_loss"])
    assert_grads(rec["discriminator"], t["d_loss"])
    # the learned similarity is a Gaussian on D's last hidden layer, not on pixels
    body = model.discriminator.net[:-1]
    torch.manual_seed(7)
    mu, logvar = model.encoder(b.x * 2 - 1).chunk(2, dim=-1)
    eps, z_p = torch.randn_like(mu), torch.randn_like(mu)
    fakes = torch.tanh(model.decoder(torch.cat([mu + eps * (0.5 * logvar).exp(), z_p])))
    n = b.x.shape[0]
    feats = body(torch.cat([b.x * 2 - 1, fakes[:n]]))  # x and its reconstruction, one pass
    torch.testing.assert_close(t["feature_recon"],
                               0.5 * (feats[:n] - feats[n:]).pow(2).sum(1).mean())


def test_vaegan_discriminator_sees_real_and_fake_batches_apart() -> None:
    """D's GAN logits come from a real-only and a fake-only batch (BatchNorm statistics per
    kind, as DCGAN): with one mixed batch D out-ran the decoder on mnist-5k (mean D(G(z))
    ~0.001 without balancing) and the quick-preset samples stayed blotches (FID ~210)."""
    model, b = build("vaegan"), batch()
    torch.manual_seed(7)
    t = model.losses(b.x)
    torch.manual_seed(7)
    mu, logvar = model.encoder(b.x * 2 - 1).chunk(2, dim=-1)
    eps, z_p = torch.randn_like(mu), torch.randn_like(mu)
    fakes = torch.tanh(model.decoder(torch.cat([mu + eps * (0.5 * logvar).exp(), z_p])))
    torch.testing.assert_close(t["real_logits"], model.discriminator(b.x * 2 - 1).squeeze(-1))
    torch.testing.assert_close(torch.cat([t["rec_logits"], t["prior_logits"]]),
                               model.discriminator(fakes).squeeze(-1))


def test_vaegan_balancing_skips_the_winning_side() -> None:
    """Larsen et al.'s code: no D step while D wins by the margin, no decoder step while it
    loses by it; the encoder always steps; margin <= 0 turns the rule off."""
    model = build("vaegan", equilibrium=0.68, margin=0.4)
    everyone = ["encoder", "decoder", "discriminator"]
    assert model.networks_to_step(0.7, 0.6) == everyone
    assert model.networks_to_step(0.1, 0.7) == ["encoder", "decoder"]  # D sure of real images
    assert model.networks_to_step(0.7, 1.5) == ["encoder", "discriminator"]  # fakes all caught
    assert model.networks_to_step(0.1, 1.5) == everyone  # both rules fire: step both
    assert build("vaegan", margin=0.0).networks_to_step(0.1, 0.7) == everyone


# -- capabilities and sampling ----------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_capabilities_and_eval_mode_sampling(name: str) -> None:
    model = build(name)
    model.training_step(batch(), model.configure_optimizers())
    have = capabilities(model)
    assert {"sample", "prior", "generate"} <= have and "decode" not in have
    assert ("encode" in have) == (name == "vaegan")
    model.eval()
    buffers = {k: b.clone() for k, b in model.named_buffers()}
    x1 = sample_from(model, 6, torch.Generator().manual_seed(3))
    x2 = sample_from(model, 6, torch.Generator().manual_seed(3))
    assert x1.shape == (6, 1, 28, 28) and torch.equal(x1, x2)  # the fixed-noise grid works
    assert x1.min() >= 0 and x1.max() <= 1
    assert all(torch.equal(b, buffers[k]) for k, b in model.named_buffers())  # BN stats untouched
    assert model.prior().event_shape == (model.config.latent_dim,)
    if name == "vaegan":
        assert model.encode(batch(4).x).event_shape == (model.config.latent_dim,)


@pytest.mark.parametrize("name", ["dcgan", "vaegan"])
def test_64x64_rgb_shape(name: str) -> None:
    info = DataInfo("synthetic-rgb", "continuous", (3, 64, 64), observation="gaussian")
    model = build(name, info=info)
    out = model.training_step(batch(4, info), model.configure_optimizers())
    assert all(math.isfinite(v.item()) for v in out.values())
    assert sample_from(model.eval(), 2).shape == (2, 3, 64, 64)


# -- checkpoints ------------------------------------------------------------------------
def snapshot(model: torch.nn.Module, opts: dict) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in opts.items()}}, buf)
    return buf.getvalue()


def dropout(name: str) -> dict[str, float]:
    """GAN's D keeps its dropout here: resuming must reproduce its random masks too."""
    return {"d_dropout": 0.3} if name == "gan" else {}


def restore(name: str, blob: bytes) -> tuple[torch.nn.Module, dict]:
    state = torch.load(io.BytesIO(blob), weights_only=True)
    torch.manual_seed(123)  # a different initialisation, overwritten by the load
    model = build(name, **dropout(name))
    opts = model.configure_optimizers()
    model.load_state_dict(state["model"])
    for k, opt in opts.items():
        opt.load_state_dict(state["optimizers"][k])
    return model, opts


@pytest.mark.parametrize("name", NAMES)
def test_save_and_resume_matches_uninterrupted_training(name: str) -> None:
    def steps(model, opts, seeds):
        for s in seeds:
            torch.manual_seed(s)
            model.training_step(batch(seed=s), opts)

    torch.manual_seed(0)
    straight = build(name, **dropout(name))
    opts = straight.configure_optimizers()
    steps(straight, opts, [1, 2])
    blob = snapshot(straight, opts)
    steps(straight, opts, [3, 4])
    resumed, ropts = restore(name, blob)
    steps(resumed, ropts, [3, 4])
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


# -- divergence -------------------------------------------------------------------------
def test_discriminator_certain_for_a_whole_epoch_is_divergence() -> None:
    sure = discriminator_stats(torch.full((8,), 9.0), torch.full((8,), -9.0), 0.99)
    unsure = discriminator_stats(torch.full((8,), 9.0), torch.full((8,), -1.0), 0.99)
    assert sure["d_certain"] == 1 and unsure["d_certain"] == 0
    check_discriminator(0, {"d_certain": 0.95, "d_real": 0.99, "d_fake": 0.01})  # one batch unsure
    with pytest.raises(Diverged, match="certain for all of epoch 4"):
        check_discriminator(4, {"d_certain": 1.0, "d_real": 0.999, "d_fake": 0.001})


@pytest.mark.parametrize("name", NAMES)
def test_huge_learning_rate_gives_non_finite_losses(name: str) -> None:
    """The knob of the failure tests: ``--set lr=1e30`` (the runner fails non-finite epochs)."""
    model = build(name, lr=1e30)
    opts = model.configure_optimizers()
    outs = [model.training_step(batch(seed=s), opts) for s in range(3)]
    assert not math.isfinite(outs[-1]["d_loss"].item())


# -- through the runner -----------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic():
    from genbench.data import DataRequest, load_dataset

    return load_dataset(DataRequest("synthetic"))


def run(name: str, results: Path, data, **overrides: str):
    from genbench.training import RunSpec, execute, plan_run

    spec = RunSpec(model=name, dataset="synthetic", preset="smoke", seed=0, epochs=2,
                   results=results, device="cpu", metrics=("elbo",), overrides=overrides)
    return execute(plan_run(spec, data))


@pytest.mark.parametrize("name", NAMES)
def test_runner_trains_and_records_discriminator_history(name: str, tmp_path: Path,
                                                         synthetic) -> None:
    outcome = run(name, tmp_path, synthetic)
    assert outcome.status == "finished", outcome.message
    folder = outcome.run_dir
    for f in ("samples.png", "samples/epoch_001.png", "samples/epoch_002.png", "checkpoint.pt"):
        assert (folder / f).exists(), f
    rows = list(csv.DictReader((folder / "history.csv").open()))
    assert len(rows) == 2
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert math.isfinite(float(rows[-1][key])), key
    assert (folder / "reconstructions.png").exists() == (name == "vaegan")


@pytest.mark.parametrize("setting, reason", [("lr", "non-finite"), ("certainty", "certain for all")])
def test_a_diverging_run_fails_alone(setting: str, reason: str, tmp_path: Path, synthetic) -> None:
    """NaN losses (lr=1e30) or a D counted certain on every batch (certainty=0, which
    flags every batch) fail that run with a reason; the next run is unaffected."""
    bad = run("dcgan", tmp_path, synthetic, **{setting: "1e30" if setting == "lr" else "0"})
    assert bad.status == "failed" and bad.metrics["status"] == "failed"
    assert "diverged" in bad.metrics["reason"] and reason in bad.metrics["reason"]
    good = run("gan", tmp_path, synthetic)
    assert good.status == "finished" and good.metrics["status"] == "finished"


@pytest.mark.parametrize("name", NAMES)
def test_runner_resume_after_ctrl_c_matches_a_straight_run(name: str, tmp_path: Path,
                                                           synthetic) -> None:
    """Every network, optimizer and BatchNorm buffer (and GAN's dropout stream) resume."""
    import dataclasses as dc

    from genbench.training import RunSpec, execute, plan_run

    straight = run(name, tmp_path / "a", synthetic)
    spec = RunSpec(model=name, dataset="synthetic", preset="smoke", seed=0, epochs=2,
                   results=tmp_path / "b", device="cpu", metrics=("elbo",))
    plan = plan_run(spec, dc.replace(synthetic))  # a private bundle: we patch its batches
    interrupt_at_batch(plan, 10)  # Ctrl-C in the middle of the second epoch
    with pytest.raises(KeyboardInterrupt):
        execute(plan)
    resumed = execute(plan_run(spec, synthetic))
    assert resumed.status == "finished", resumed.message
    a = torch.load(straight.run_dir / "checkpoint.pt", weights_only=True)
    b = torch.load(resumed.run_dir / "checkpoint.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["optimizers"].keys() == b["optimizers"].keys() == set(NETWORKS[name])


def test_gan_paper_preset_has_goodfellow_sizes() -> None:
    """100-d noise, 1200-1200 ReLU G with sigmoid output, maxout D with dropout."""
    from genbench.nn import Maxout

    cls = get_model("gan").cls
    model = cls(cls.Config(**cls.presets["paper"]), MNIST)
    linears = [m for m in model.generator if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(100, 1200), (1200, 1200),
                                                                   (1200, 784)]
    assert any(isinstance(m, Maxout) for m in model.discriminator.modules())
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in model.discriminator.modules())
    out = model.training_step(batch(), model.configure_optimizers())
    assert all(math.isfinite(v.item()) for v in out.values())
