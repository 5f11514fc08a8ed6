"""The edit API: a zero edit is the reconstruction; calibrated arithmetic vectors; CVAE's
condition; JMVAE's hook; who cannot edit and why."""

from __future__ import annotations

import pytest
import torch

from genbench.contract import generate_from
from genbench.data import DataRequest, load_dataset
from genbench.edits import dataset_attributes, direction, edit_method, make_editor
from genbench.errors import GenbenchError
from genbench.plugins import load_plugins
from genbench.registry import get_model

load_plugins()


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: see conftest


@pytest.fixture(scope="module")
def morpho_data(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("GENBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        return load_dataset(DataRequest("synthetic-morpho"))
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def rgb():
    return load_dataset(DataRequest("synthetic-rgb"))


def build(name, info, **cfg):
    torch.manual_seed(0)
    cls = get_model(name).cls
    return cls(cls.Config(**cfg), info).eval()


def test_direction_is_calibrated_per_sd():
    """Codes linear in the attribute: z = a * w. The quartile vector per sd is w * sd."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, generator=gen) * 3 + 10
    w = torch.tensor([0.5, -2.0, 1.0])
    v = direction(a[:, None] * w, a, binary=False, scale=float(a.std()))
    assert torch.allclose(v, w * a.std(), rtol=1e-4)
    on = torch.arange(400) % 2 == 0
    codes = torch.randn(400, 3, generator=gen) + on[:, None].float() * w
    assert torch.allclose(direction(codes, on.float(), True, 1.0),
                          codes[on].mean(0) - codes[~on].mean(0))


@pytest.mark.parametrize("name", ["vae", "ae", "jmvae"])
def test_zero_edit_is_the_reconstruction(morpho_data, name):
    cfg = {"hidden": (16,), "latent_dim": 3}
    model = build(name, morpho_data.info, **cfg)
    if name == "jmvae":
        model.on_train_start(morpho_data)
    editor = make_editor(model, morpho_data, n_reference=200)
    x, y, m = morpho_data.eval_x("test")[:5], morpho_data.test.y[:5], morpho_data.test.measures[:5]
    with torch.no_grad():
        if name == "jmvae":
            recon = model.generate(model.encode_joint(x, y, m).mean)
        else:
            recon = generate_from(model, model.encode(x).mean)
    assert torch.allclose(editor.edit(x, "thickness", 0.0, y=y, measures=m), recon)
    moved = editor.edit(x, "thickness", 2.0, y=y, measures=m)
    assert moved.shape == x.shape and not torch.allclose(moved, recon)


def test_arithmetic_moves_along_the_vector(morpho_data):
    model = build("vae", morpho_data.info, hidden=(16,), latent_dim=3)
    editor = make_editor(model, morpho_data, n_reference=200)
    x = morpho_data.eval_x("test")[:4]
    with torch.no_grad():
        z = model.encode(x).mean
        expected = model.generate(z + 1.5 * editor.vectors["slant"])
    assert torch.allclose(editor.edit(x, "slant", 1.5), expected)
    assert editor.method("slant") == "arithmetic"


def test_cvae_edits_by_its_condition_and_holds_it_for_measures(rgb, morpho_data):
    model = build("cvae", rgb.info, hidden=(16,), latent_dim=3)
    editor = make_editor(model, rgb, n_reference=100)
    x, y = rgb.eval_x("test")[:3], rgb.test.y[:3]
    assert editor.method("attr2") == "condition" and not editor.vectors
    with torch.no_grad():
        z = model.encode(x, y=y).mean
        recon = model.generate(z, y=y)
        y2 = y.clone()
        y2[:, 2] += 1
        expected = model.generate(z, y=y2)
    assert torch.allclose(editor.edit(x, "attr2", 0.0, y=y), recon)
    assert torch.allclose(editor.edit(x, "attr2", 1.0, y=y), expected)
    # on digits the class is the condition: thickness by arithmetic, the class held
    digits = build("cvae", morpho_data.info, hidden=(16,), latent_dim=3)
    editor = make_editor(digits, morpho_data, n_reference=200)
    assert editor.method("thickness") == "arithmetic"
    xd, yd = morpho_data.eval_x("test")[:3], morpho_data.test.y[:3]
    with torch.no_grad():
        zd = digits.encode(xd, y=yd).mean
        expected = digits.generate(zd + editor.vectors["thickness"], y=yd)
    assert torch.allclose(editor.edit(xd, "thickness", 1.0, y=yd), expected)


def test_who_cannot_edit(morpho_data):
    gan = build("gan", morpho_data.info)
    with pytest.raises(GenbenchError, match="no encoder"):
        edit_method(gan)
    plain = load_dataset(DataRequest("synthetic"))
    with pytest.raises(GenbenchError, match="no attributes to edit"):
        dataset_attributes(plain)
    editor = make_editor(build("vae", morpho_data.info, hidden=(8,), latent_dim=2), morpho_data, 100)
    with pytest.raises(GenbenchError, match="no attribute 'Smiling'"):
        editor.edit(morpho_data.eval_x("test")[:2], "Smiling", 1.0)


# -- the edits metric ----------------------------------------------------------------------
def thicken(x: torch.Tensor, delta: float) -> torch.Tensor:
    """An oracle thickness editor: |delta| grey dilations (delta > 0) or erosions (< 0)."""
    for _ in range(int(abs(delta))):
        pool = torch.nn.functional.max_pool2d
        x = pool(x, 3, 1, 1) if delta > 0 else -pool(-x, 3, 1, 1)
    return x


def left_heavy(images: torch.Tensor) -> torch.Tensor:
    w = images.shape[-1] // 2
    return (images[..., :w].sum((1, 2, 3)) > images[..., w:].sum((1, 2, 3))).long()


def test_metric_on_an_oracle_editor(morpho_data):
    from genbench.data import morpho
    from genbench.metrics.edits import DELTAS, measure_edits

    x = morpho_data.test.x[:30].float() / 255
    names = morpho.MEASURES
    scale = morpho_data.train.measures.std(0).double()

    def measure(images):
        return morpho.measure(images).double() / scale

    def oracle(name, delta):
        return thicken(x, delta) if name == "thickness" else x

    out = measure_edits(oracle, names, ("thickness", "slant"), DELTAS, measure, left_heavy)
    assert out["edit_slope_thickness"] > 0.3 and out["edit_corr_thickness"] > 0.8
    assert out["edit_slope_slant"] == 0 and out["edit_corr_slant"] == 0  # nothing happened
    assert out["edit_identity"] >= 0.9
    # an editor that mirrors the digit: identity lost, other attributes (slant) move
    out = measure_edits(lambda n, d: x if d == 0 else x.flip(-1), names, ("thickness",),
                        DELTAS, measure, left_heavy)
    assert out["edit_identity"] < 0.3
    assert out["edit_entanglement"] > 0.1 and abs(out["edit_slope_thickness"]) < 0.05


def test_response_slope_and_correlation_closed_form():
    from genbench.metrics.edits import entanglement, response

    req = torch.tensor([-2.0, -1.0, 1.0, 2.0], dtype=torch.float64)
    achieved = 0.5 * req[:, None].expand(4, 3).clone()
    assert response(req, achieved) == pytest.approx((0.5, 1.0))
    others = torch.full((4, 3, 2), 0.2, dtype=torch.float64) * req.abs()[:, None, None]
    assert entanglement(req, others) == pytest.approx(0.2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One evaluator cache for the module: each classifier is trained once."""
    return tmp_path_factory.mktemp("evaluators")


def smoke():
    from genbench.presets import get_preset

    return get_preset("smoke").with_overrides(n_eval=16)


@pytest.mark.parametrize("name", ["jmvae", "vae", "cvae"])
def test_edits_metric_runs_through_the_registry(morpho_data, cache, name):
    from genbench.metrics import EvalContext, evaluate_metrics

    model = build(name, morpho_data.info, hidden=(16,), latent_dim=3)
    if name == "jmvae":
        model.on_train_start(morpho_data)
    ctx = EvalContext(model=model, data=morpho_data, preset=smoke(), seed=0,
                      device=torch.device("cpu"), cache_dir=cache)
    values, na = evaluate_metrics(ctx, ["edits"])
    assert not na, na
    for a in ("thickness", "slant", "width", "height", "area"):
        assert -1 <= values[f"edit_corr_{a}"] <= 1
    assert 0 <= values["edit_identity"] <= 1 and values["edit_entanglement"] >= 0


def test_edits_metric_on_celeba_shaped_data(rgb, cache):
    from genbench.metrics import EvalContext, evaluate_metrics

    model = build("jmvae", rgb.info, hidden=(16,), latent_dim=3)
    ctx = EvalContext(model=model, data=rgb, preset=smoke(), seed=0,
                      device=torch.device("cpu"), cache_dir=cache)
    values, na = evaluate_metrics(ctx, ["edits"])
    assert not na, na
    assert {"edit_slope_attr0", "edit_corr_attr3", "edit_entanglement"} <= set(values)
    assert "edit_identity" not in values  # CelebA has no classes


def test_edits_metric_is_na_without_attributes(tmp_path):
    from genbench.metrics import EvalContext, evaluate_metrics
    from genbench.presets import get_preset

    plain = load_dataset(DataRequest("synthetic"))
    ctx = EvalContext(model=build("vae", plain.info, hidden=(8,), latent_dim=2), data=plain,
                      preset=get_preset("smoke"), seed=0, device=torch.device("cpu"),
                      cache_dir=tmp_path)
    _, na = evaluate_metrics(ctx, ["edits"])
    assert "no attributes to edit" in na["edit_entanglement"]


def test_sweeps_gallery_prints_measured_values(morpho_data, tmp_path, monkeypatch):
    from PIL import Image

    import genbench.galleries.sweeps as sweeps_module
    from genbench.loading import load_run
    from genbench.training import RunSpec, execute, plan_run

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "cache"))
    spec = RunSpec(model="vae", dataset="synthetic-morpho", preset="smoke", seed=0, epochs=1,
                   results=tmp_path, device="cpu", metrics=("elbo",))
    outcome = execute(plan_run(spec, morpho_data))
    assert outcome.status == "finished", outcome.message
    run = load_run(outcome.run_dir)
    printed = []
    real_fmt = sweeps_module._fmt
    monkeypatch.setattr(sweeps_module, "_fmt", lambda n, v: printed.append((n, v)) or real_fmt(n, v))
    path = sweeps_module.sweeps(run, tmp_path / "sweep.png", generator=torch.Generator(), n=3,
                                steps=5, target="slant")
    width, height = Image.open(path).size
    assert width == 2 + 6 * (56 + 2) and height == 12 + 2 + 3 * (56 + 12 + 2)
    assert len(printed) == 3 * 6 and all(n == "slant" for n, _ in printed)
    with pytest.raises(GenbenchError, match="no attribute 'smile'"):
        sweeps_module.sweeps(run, tmp_path / "x.png", generator=torch.Generator(), target="smile")
