"""synthetic-3d: a deterministic renderer of set factors, periodic in the angles; the dataset
carries its factors as measures; edits on it are measured by a factor regressor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genbench.data import DataRequest, load_dataset, render3d

pytestmark = pytest.mark.usefixtures("one_thread")


def _render(shape: str, az, el, li, size: int = 24) -> np.ndarray:
    return render3d.render(shape, np.asarray(az, float), np.asarray(el, float), np.asarray(li, float),
                           size=size)


@pytest.mark.parametrize("shape", render3d.OBJECTS)
def test_rendering_is_a_deterministic_function_of_the_factors(shape):
    a = _render(shape, [10.0, -40.0], [5.0, 20.0], [30.0, -60.0])
    b = _render(shape, [10.0, -40.0], [5.0, 20.0], [30.0, -60.0])
    assert a.dtype == np.uint8 and a.shape == (2, 24, 24)
    assert np.array_equal(a, b)
    assert (a > 0).mean() > 0.1  # the object is there, on a black background
    assert (a == 0).mean() > 0.2


@pytest.mark.parametrize("shape", render3d.OBJECTS)
def test_a_full_turn_returns_the_first_image_and_each_factor_moves_it(shape):
    first = _render(shape, [25.0], [10.0], [-20.0])
    assert np.array_equal(_render(shape, [25.0 + 360.0], [10.0], [-20.0]), first)
    assert np.array_equal(_render(shape, [25.0 - 720.0], [10.0 + 360.0], [-20.0 + 360.0]), first)
    for moved in (_render(shape, [70.0], [10.0], [-20.0]), _render(shape, [25.0], [-25.0], [-20.0]),
                  _render(shape, [25.0], [10.0], [60.0])):
        assert not np.array_equal(moved, first)


def test_light_changes_shading_not_silhouette():
    left, right = _render("face", [0.0], [0.0], [-80.0]), _render("face", [0.0], [0.0], [80.0])
    assert np.array_equal(left > 0, right > 0)  # the same pixels are covered
    half = left.shape[-1] // 2
    # lit from the left (negative light azimuth): the left half is the brighter one
    assert left[..., :half].astype(float).sum() > left[..., half:].astype(float).sum()
    assert right[..., half:].astype(float).sum() > right[..., :half].astype(float).sum()


def test_mirror_symmetric_face_renders_mirrored_at_mirrored_angles():
    """The face is symmetric in x: azimuth a and light l mirror azimuth -a and light -l."""
    a, b = _render("face", [30.0], [0.0], [40.0]), _render("face", [-30.0], [0.0], [-40.0])
    assert np.abs(a.astype(int) - b[..., ::-1].astype(int)).max() <= 1  # rounding of the shade


@pytest.fixture()
def tiny_3d(monkeypatch, tmp_path):
    monkeypatch.setattr(render3d, "SPLITS", {"train": 150, "val": 30, "test": 30})
    return load_dataset(DataRequest("synthetic-3d")), tmp_path


def test_dataset_carries_its_factors_as_measures_and_is_cached(tiny_3d, monkeypatch):
    data, _ = tiny_3d
    assert data.measure_names == render3d.FACTORS
    assert data.info.shape == (1, 32, 32) and data.info.variant == "continuous"
    assert data.info.num_classes == 3 and len(data.train) == 150 and len(data.test) == 30
    objects, factors = render3d.sample_factors(210, render3d.SEED)
    assert torch.equal(data.test.y, torch.from_numpy(objects[180:]).long())
    assert torch.allclose(data.test.measures, torch.from_numpy(factors[180:]).float())
    # the stored image is the renderer's for the stored factors
    k = 3
    again = render3d.render(render3d.OBJECTS[int(data.test.y[k])], *factors[180 + k:181 + k].T)
    assert torch.equal(data.test.x[k, 0], torch.from_numpy(again[0]))
    # a second load reads the cache, not the renderer
    monkeypatch.setattr(render3d, "render_set", lambda *a, **k: pytest.fail("rendered twice"))
    assert torch.equal(load_dataset(DataRequest("synthetic-3d")).train.x, data.train.x)


def test_edits_on_rendered_data_are_measured_by_the_factor_regressor(tiny_3d):
    from genbench.metrics import EvalContext, evaluate_metrics
    from genbench.plugins import load_plugins
    from genbench.presets import get_preset
    from genbench.registry import get_model

    data, cache = tiny_3d
    load_plugins()
    torch.manual_seed(0)
    cls = get_model("vae").cls
    model = cls(cls.Config(hidden=(16,), latent_dim=3), data.info).eval()
    ctx = EvalContext(model=model, data=data, preset=get_preset("smoke").with_overrides(n_eval=16),
                      seed=0, device=torch.device("cpu"), cache_dir=cache)
    values, na = evaluate_metrics(ctx, ["edits"])
    assert not na, na
    for f in render3d.FACTORS:
        assert -1 <= values[f"edit_corr_{f}"] <= 1
        assert values[f"edit_r2_{f}"] <= 1  # the measuring instrument's own score is recorded
    assert list((cache / "factors").glob("synthetic-3d-*.pt"))  # the regressor is cached


def test_factor_regressor_reads_factors_back(tiny_3d):
    """On its 150 training images the regressor must explain a good share of each factor's
    variance (it is the instrument that measures edits): predicting the mean scores 0, and
    predictions left in standardized units score far below it."""
    from genbench.metrics.factors import train_regressor
    from genbench.metrics.features import mean_images

    data, _ = tiny_3d
    reg, _ = train_regressor(data, epochs=30)
    with torch.no_grad():
        pred = reg(mean_images(data.train.x, data.info.variant))
    m = data.train.measures
    r2 = 1 - (pred - m).pow(2).mean(0) / m.var(0, unbiased=False)
    assert (r2 > 0.15).all() and r2.max() > 0.4, r2
