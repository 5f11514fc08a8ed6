"""LAPGAN: the Laplacian pyramid is exact, generate is a deterministic function of one
Gaussian z over all levels, every level trains, and a smoke run goes end to end."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from genbench.contract import DataInfo, capabilities
from genbench.errors import GenbenchError
from genbench.plugins import load_plugins
from genbench.registry import get_model

load_plugins()
LAPGAN = get_model("lapgan").cls
lapgan = __import__(LAPGAN.__module__)  # the plugin module: its pyramid functions
MNIST = DataInfo("synthetic", "dynamic", (1, 28, 28), num_classes=10)
FACES = DataInfo("synthetic-rgb", "continuous", (3, 64, 64), num_attributes=40,
                 observation="gaussian")


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: see conftest


def small(info=MNIST):
    torch.manual_seed(0)
    return LAPGAN(LAPGAN.Config(hidden=32, width=8, latent_dim=8, level_noise=4), info)


def test_level_sizes():
    assert lapgan.level_sizes(28) == [7, 14, 28]
    assert lapgan.level_sizes(64) == [8, 16, 32, 64]
    with pytest.raises(GenbenchError, match="does not halve"):
        lapgan.level_sizes(36)  # 36 -> 18 -> 9: odd above the coarsest size


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (3, 3, 64, 64)])
def test_laplacian_reconstruction_is_exact(shape):
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    levels = len(lapgan.level_sizes(shape[-1]))
    coarse, residuals = lapgan.laplacian_pyramid(x, levels)
    assert coarse.shape[-1] == lapgan.level_sizes(shape[-1])[0]
    assert [h.shape[-1] for h in residuals] == lapgan.level_sizes(shape[-1])[1:]
    assert torch.allclose(lapgan.reconstruct(coarse, residuals), x, atol=1e-12)
    # the coarse image is the 2x2 block mean, repeated: a Gaussian pyramid, not a crop
    assert torch.allclose(coarse.mean((-1, -2)), x.mean((-1, -2)), atol=1e-12)


@pytest.mark.parametrize("info", [MNIST, FACES])
def test_generate_is_deterministic_in_one_gaussian_z(info):
    model = small(info).eval()
    levels = len(lapgan.level_sizes(info.shape[1]))
    assert model.prior().event_shape == (8 + 4 * (levels - 1),)
    z = model.prior().sample((6,))
    with torch.no_grad():
        a, b = model.generate(z), model.generate(z)
    assert torch.equal(a, b) and a.shape == (6, *info.shape)
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.allclose(model.generate(z[:2]), a[:2], atol=1e-6)  # no batch dependence
    z2 = z.clone()
    z2[:, -1] += 1.0  # the finest level's noise changes the image
    assert not torch.allclose(model.generate(z2), a)
    # the image is the sum of its levels: u(I_{k-1}) + h_k at every level
    parts = model.levels(z)
    for (_, _, prev), (low, h, image) in zip(parts, parts[1:], strict=False):
        assert torch.allclose(low, lapgan.upsample(prev)) and torch.allclose(low + h, image)
    assert {"prior", "generate", "sample", "train"} <= capabilities(model)
    assert "encode" not in capabilities(model)


def test_one_step_trains_every_level():
    model = small()
    opts = model.configure_optimizers()
    assert len(opts) == 2 * 3  # one D and one G per level
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = (torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    from genbench.contract import Batch

    stats = model.training_step(Batch(x=x), opts)
    for k in range(3):
        assert math.isfinite(float(stats[f"d_loss_{k}"])) and math.isfinite(float(stats[f"g_loss_{k}"]))
    changed = {name.split(".")[0] + (name.split(".")[1] if name.startswith("level") else "")
               for name, v in model.state_dict().items() if not torch.equal(v, before[name])}
    assert changed >= {"coarse_g", "coarse_d", "level_g0", "level_g1", "level_d0", "level_d1"}


def test_smoke_run_end_to_end(tmp_path: Path):
    from genbench.data import DataRequest, load_dataset
    from genbench.training import RunSpec, execute, plan_run

    data = load_dataset(DataRequest("synthetic"))
    spec = RunSpec(model="lapgan", dataset="synthetic", preset="smoke", seed=0, epochs=2,
                   results=tmp_path, device="cpu", metrics=("ais_shared", "quality"))
    outcome = execute(plan_run(spec, data))
    assert outcome.status == "finished", outcome.message
    rows = list(csv.DictReader((outcome.run_dir / "history.csv").open()))
    assert len(rows) == 2 and all(math.isfinite(float(rows[-1][k])) for k in ("g_loss", "d_loss_2"))
    assert math.isfinite(outcome.metrics["test_ais_shared"]) and math.isfinite(outcome.metrics["fid"])
    assert (outcome.run_dir / "samples.png").exists()
    # the pyramid gallery: rows of [coarse, (residual, sum) per level], from the checkpoint
    from PIL import Image

    from genbench.galleries.pyramid import pyramid
    from genbench.loading import load_run

    run = load_run(outcome.run_dir)
    path = pyramid(run, tmp_path / "pyramid.png", generator=torch.Generator().manual_seed(0), n=3)
    width, height = Image.open(path).size
    assert width == 2 + 5 * (56 + 2) and height == 12 + 2 + 3 * (56 + 2)  # 5 columns, 3 rows
