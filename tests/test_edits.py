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


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
