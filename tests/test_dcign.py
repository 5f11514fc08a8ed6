"""DC-IGN: the clamping (forward mean, backward deviation), the sweep set, a smoke run whose
edits move the assigned units, and the factors gallery."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genbench.data import render3d, sweeps3d

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def dcign_module(plugins_loaded):
    from genbench.registry import get_model

    return __import__(get_model("dcign").cls.__module__, fromlist=["clamp_units"])


def test_clamped_units_take_the_batch_mean_and_get_their_deviation_as_gradient(dcign_module):
    torch.manual_seed(0)
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    clamped = torch.tensor([True, False, True, True])  # unit 1 is the one factor that varies
    out = dcign_module.clamp_units(z, clamped)
    # forward: clamped columns equal across the batch, at the batch mean; the free one is z
    assert torch.allclose(out[:, clamped], z.mean(0)[clamped].expand(5, -1))
    assert torch.equal(out[:, 1], z[:, 1])
    # backward, against a loss whose autograd gradient we know: d/d out of sum(w * out) = w
    w = torch.randn(5, 4, dtype=torch.float64)
    (out * w).sum().backward()
    expected = w.clone()
    expected[:, clamped] = (z - z.mean(0))[:, clamped].detach()  # the paper's replacement
    assert torch.allclose(z.grad, expected)
    # plain mean-clamping's autograd gradient would be w's column mean: not what we get
    assert not torch.allclose(z.grad[:, 0], w[:, 0].mean().expand(5))


def test_clamping_is_per_sweep_when_a_batch_holds_several(dcign_module):
    z = torch.arange(12.0).view(6, 2).requires_grad_()
    group = torch.tensor([0, 0, 0, 1, 1, 1])
    out = dcign_module.clamp_units(z, torch.tensor([True, False]), group)
    assert out[:3, 0].tolist() == [2.0] * 3 and out[3:, 0].tolist() == [8.0] * 3
    out.sum().backward()
    assert z.grad[:, 0].tolist() == [-2.0, 0.0, 2.0, -2.0, 0.0, 2.0]
    assert z.grad[:, 1].tolist() == [1.0] * 6


def test_sweep_set_is_a_function_of_its_seed_and_varies_one_thing_per_sweep(tmp_path):
    a = sweeps3d.sweep_factors(3, 5, seed=4)
    b = sweeps3d.sweep_factors(3, 5, seed=4)
    assert all(np.array_equal(u, v) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[1], sweeps3d.sweep_factors(3, 5, seed=5)[1])
    objects, factors, sweep, varied = a
    assert len(objects) == 3 * (3 * 5 + 3) and len(varied) == 3 * 4
    for s, kind in enumerate(varied):
        rows = sweep == s
        fixed = [j for j in range(3) if j != kind]
        assert (factors[rows][:, fixed] == factors[rows][0, fixed]).all()  # the others fixed
        if kind < 3:  # a factor sweep: one object, the factor over its whole range
            assert len(set(objects[rows])) == 1
            lo, hi = render3d.RANGES[render3d.FACTORS[kind]]
            assert np.allclose(factors[rows][:, kind], np.linspace(lo, hi, 5))
        else:  # an object sweep: every object, every factor fixed
            assert sorted(objects[rows]) == [0, 1, 2]
    # rendered and cached: the images are the renderer's, and a second call reads the file
    sets = sweeps3d.sweep_set(1, 3, seed=4, cache=tmp_path)
    o, f, _, _ = sweeps3d.sweep_factors(1, 3, seed=4)
    k = 4
    again = render3d.render(render3d.OBJECTS[o[k]], *f[k:k + 1].T)
    assert torch.equal(sets["x"][k, 0], torch.from_numpy(again[0]))
    assert list((tmp_path / "render3d").glob("sweeps-*.pt"))
    assert torch.equal(sweeps3d.sweep_set(1, 3, seed=4, cache=tmp_path)["x"], sets["x"])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, plugins_loaded):
    """`genbench run dcign --dataset synthetic-3d --preset smoke` on a tiny synthetic-3d."""
    from typer.testing import CliRunner

    from genbench.cli import app

    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("dcign")
    # the session's cache (conftest) and test_render3d's sizes: the cache key has no sizes
    mp.setenv("GENBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    mp.setattr(render3d, "SPLITS", {"train": 150, "val": 30, "test": 30})
    try:
        res = CliRunner().invoke(app, ["run", "dcign", "--dataset", "synthetic-3d", "--preset",
                                       "smoke", "--metrics", "edits,elbo", "--results",
                                       str(root / "results")])
        assert res.exit_code == 0, res.output
        (run_dir,) = [p.parent for p in (root / "results").rglob("metrics.json")]
        yield run_dir
    finally:
        mp.undo()


def test_smoke_run_records_per_factor_edits(smoke_run):
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    for f in render3d.FACTORS:
        for kind in ("slope", "corr", "r2"):
            assert np.isfinite(metrics[f"edit_{kind}_{f}"]), (f, kind)
    assert "edit_entanglement" in metrics and np.isfinite(metrics["test_elbo"])


def test_edit_moves_only_the_assigned_unit(smoke_run):
    from genbench import load_model

    model, _ = load_model(smoke_run)
    assert (model.unit_per_sd != 0).all()  # calibrated after training
    x = torch.rand(3, 1, 32, 32)
    z0 = model.encode(x).mean
    for f, j in model.factor_units.items():
        captured = {}
        gen = model.generate
        model.generate = lambda z, captured=captured: captured.setdefault("z", z) * 0
        model.edit(x, f, 2.0)
        model.generate = gen
        moved = (captured["z"] - z0).abs() > 1e-6
        assert moved[:, j].all() and not moved[:, [k for k in range(z0.shape[1]) if k != j]].any()
    with pytest.raises(Exception, match="assigned factors"):
        model.edit(x, "thickness", 1.0)


def test_factors_gallery_writes_its_file(smoke_run):
    from genbench.galleries import render

    out = render(smoke_run, "factors")
    assert out.exists() and out.stat().st_size > 0
    # the Morpho sweeps gallery says where set factors are drawn, not a traceback
    from genbench.galleries import NotApplicable

    with pytest.raises(NotApplicable, match="--kind factors"):
        render(smoke_run, "sweeps")


def test_training_steps_cycle_the_varied_factor_and_clamp_the_rest(dcign_module, tmp_path, monkeypatch):
    """Step t varies VARIED[t % 4]: its rows come from sweeps of that kind only, grouped by
    sweep, with every unit clamped but the factor's (object sweeps: the factor units)."""
    from genbench.contract import Batch, DataInfo

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))
    cls = dcign_module.DCIGN
    info = DataInfo("synthetic-3d", "continuous", (1, 32, 32), num_classes=3)
    model = cls(cls.Config(hidden=(16,), latent_dim=5, sweep_bases=3, sweep_length=4,
                           sweeps_per_batch=2), info)
    model.on_train_start(_no_factors())
    sw = model.sweeps
    for step in range(8):
        kind = step % 4
        rows, group, clamped = model.sweep_batch(kind, step)
        assert (sw["varied"][sw["sweep"][rows]] == kind).all()  # sweeps of the step's kind
        assert int(group.max()) + 1 == 2  # two sweeps (object sweeps: 2 * 4 // 3 of them)
        for g in range(2):
            m, o = sw["measures"][rows[group == g]], sw["y"][rows[group == g]]
            others = [j for j in range(3) if j != kind]
            assert (m[:, others] == m[0, others]).all()  # only the named factor varies
            assert (o == o[0]).all() if kind < 3 else sorted(o.tolist()) == [0, 1, 2]
            assert kind == 3 or len(set(m[:, kind].tolist())) == 4
        free = [kind] if kind < 3 else [3, 4]
        assert [j for j in range(5) if not clamped[j]] == free
        out = model.training_step(Batch(x=torch.zeros(1, 1, 32, 32)))
        assert out["loss"].requires_grad
    assert int(model.steps_done) == 8


def _no_factors():
    """A stand-in bundle without set factors: dcign then scales by the sweeps' own spread."""
    from types import SimpleNamespace

    return SimpleNamespace(train=SimpleNamespace(measures=None), measure_names=None,
                           info=SimpleNamespace(name="none"))
