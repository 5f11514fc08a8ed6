"""PixelRNN: the skew, causal layers, a normalized likelihood, the cached sampler, a smoke run."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from run_folders import smoke_run_metrics
from typer.testing import CliRunner

from genbench.cli import app
from genbench.contract import Batch, DataInfo, capabilities, optimizer_dict, step_model
from genbench.errors import GenbenchError
from genbench.plugins import load_plugins
from genbench.presets import PRESETS
from genbench.registry import get_model
from genbench.settings import resolve

load_plugins()
PixelRNN = get_model("pixelrnn").cls
pixelrnn = __import__(PixelRNN.__module__, fromlist=["skew"])

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: see conftest


def tiny(shape, observation="bernoulli", layer="diagonal", seed=0, **cfg) -> torch.nn.Module:
    torch.manual_seed(seed)
    info = DataInfo("t", "continuous" if observation == "gaussian" else "dynamic", shape,
                    observation=observation)
    config = PixelRNN.Config(**{"layer": layer, "hidden": 3, "layers": 2, "head": 8, **cfg})
    model = PixelRNN(config, info).double()
    # random biases and weights far from zero so no gradient vanishes by accident
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def dependencies(model, x: torch.Tensor) -> list[set[int]]:
    """For each output pixel i (raster order), the input pixels j with d logit_i / d x_j != 0
    (inputs pooled over channels; outputs every channel and level)."""
    c, h, w = x.shape[1:]
    x = x.clone().requires_grad_(True)
    logits = model.logits(x)  # (1, C, levels, H, W)
    out = []
    for i in range(h * w):
        g, = torch.autograd.grad(logits[0, :, :, i // w, i % w].sum(), x, retain_graph=True)
        out.append(set((g[0].abs().sum(0).flatten() != 0).nonzero().flatten().tolist()))
    return out


def test_skew_shifts_row_i_right_by_i_and_unskew_inverts_it():
    """The skew trick (van den Oord et al. 2016, Fig. 3): x[i, j] goes to column i + j."""
    x = torch.rand(2, 3, 4, 5)
    s = pixelrnn.skew(x)
    assert s.shape == (2, 3, 4, 8)
    expected = torch.zeros_like(s)
    for i in range(4):
        expected[:, :, i, i:i + 5] = x[:, :, i]
    assert torch.equal(s, expected)
    assert torch.equal(pixelrnn.unskew(s), x)


@pytest.mark.parametrize("layer", ["diagonal", "row"])
@pytest.mark.parametrize("shape,observation,cfg", [
    ((1, 5, 6), "bernoulli", {}),
    ((3, 4, 5), "gaussian", {"layers": 1}),  # RGB: every channel of pixel i sees only pixels < i
])
def test_layers_are_causal(layer, shape, observation, cfg):
    """d out_i / d x_j == 0 for every j >= i: mask A first, mask B after, the LSTM states,
    and the right-to-left direction shifted down one row."""
    model = tiny(shape, observation, layer, **cfg)
    deps = dependencies(model, torch.rand(1, *shape, dtype=torch.float64))
    for i, seen in enumerate(deps):
        assert all(j < i for j in seen), f"output {i} sees inputs {sorted(j for j in seen if j >= i)}"
    assert deps[-1]  # and the outputs do see something


@pytest.mark.parametrize("k,layers", [(3, 1), (3, 2), (5, 3)])
def test_diagonal_bilstm_sees_every_earlier_pixel_but_one(k, layers):
    """The Diagonal BiLSTM's receptive field, exactly: every earlier pixel, except the last
    pixel of the row above for the first W - 1 - k//2 pixels of a row (k: the first, mask A
    convolution). Only first-layer features of the current row see that pixel, and the
    left-to-right direction carries them rightwards only; the right-to-left one is a row
    late. A property of the architecture as the paper describes it, at any depth."""
    w = 6
    deps = dependencies(tiny((1, 6, w), layers=layers, first_kernel=k),
                        torch.rand(1, 1, 6, w, dtype=torch.float64))
    for i, seen in enumerate(deps):
        r, c = divmod(i, w)
        blind = {r * w - 1} if r >= 1 and c < w - 1 - k // 2 else set()
        assert seen == set(range(i)) - blind, (r, c)


def test_row_lstm_sees_a_triangle():
    """The Row LSTM's receptive field above a pixel widens by k//2 columns a row (the paper's
    triangle; the Diagonal BiLSTM's does not): one layer, k = 3, a 3x3 first convolution."""
    x = torch.rand(1, 1, 6, 6, dtype=torch.float64)
    row = dependencies(tiny((1, 6, 6), layer="row", layers=1, first_kernel=3), x)
    assert row[12] == {0, 1, 2, 6, 7}  # (2, 0) sees (0, 0..2) and (1, 0..1), nothing further right
    assert row[6 * 5] >= set(range(6))  # (5, 0) sees all of row 0, five rows up


@pytest.mark.parametrize("layer", ["diagonal", "row"])
def test_binary_likelihood_sums_to_one_over_all_images(layer):
    """2x2 binary images: exp(log_prob) over all 16 sums to 1."""
    model = tiny((1, 2, 2), layer=layer)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    total = model.log_prob(xs.view(16, 1, 2, 2)).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-12)


def test_categorical_likelihood_is_a_density():
    """Continuous data, 1x2 image (256^2 value pairs): sum_v P(v) = 1, and the stored number is
    the density log P(v) + D log 256."""
    model = tiny((1, 1, 2), "gaussian", layers=1).float()
    v = torch.tensor(list(itertools.product(range(256), repeat=2)), dtype=torch.float32)
    with torch.no_grad():
        log_density = model.log_prob(((v + 0.5) / 256).view(-1, 1, 1, 2))
    assert torch.logsumexp(log_density.double() - 2 * math.log(256), 0).exp().item() == \
        pytest.approx(1, abs=1e-5)


@pytest.mark.parametrize("layer", ["diagonal", "row"])
@pytest.mark.parametrize("shape,observation,from_row", [
    ((1, 5, 6), "bernoulli", 0), ((1, 4, 5), "gaussian", 0), ((3, 3, 4), "gaussian", 0),
    ((1, 5, 6), "bernoulli", 2),  # a completion: rows 0-1 given
])
def test_cached_sampler_draws_the_same_images(layer, shape, observation, from_row):
    """The cached sampler (the LSTM states of the row above, one cell per layer per pixel)
    against one full network pass per pixel, from the same uniforms: identical images."""
    model = tiny(shape, observation, layer)
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(5, *shape, dtype=torch.float64, generator=gen)
    given = torch.rand(5, *shape, dtype=torch.float64, generator=gen).round()
    fast = model.sample_from_noise(u, given=given, from_row=from_row)
    slow = model.sample_from_noise(u, given=given, from_row=from_row, cached=False)
    assert torch.equal(fast, slow)
    assert fast.unique().numel() > 1
    assert torch.equal(fast[:, :, :from_row], given[:, :, :from_row])


@pytest.mark.parametrize("layer", ["diagonal", "row"])
def test_samples_follow_the_model(layer):
    """Sampled images' frequencies match exp(log_prob) on the 2x2 binary space (chi-square)."""
    model = tiny((1, 2, 2), layer=layer)
    n = 4000
    x = model.sample(n, torch.Generator().manual_seed(3))
    index = (x.view(n, 4) * torch.tensor([8.0, 4, 2, 1], dtype=torch.float64)).sum(1).long()
    counts = torch.bincount(index, minlength=16).double()
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    expected = model.log_prob(xs.view(16, 1, 2, 2)).exp().detach() * n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 37.7  # chi-square, 15 degrees of freedom, p = 0.001


@pytest.mark.parametrize("layer", ["diagonal", "row"])
def test_training_step_lowers_the_loss(layer):
    model = tiny((1, 4, 4), layer=layer)
    x = (torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.3).double()
    assert model.training_step(Batch(x))["loss"].requires_grad
    opts = optimizer_dict(model.configure_optimizers())
    first = step_model(model, Batch(x), opts)["loss"].item()
    for _ in range(20):
        last = step_model(model, Batch(x), opts)["loss"].item()
    assert last < first


def test_layer_is_one_of_two_names_and_kernels_are_odd():
    with pytest.raises(GenbenchError, match="diagonal"):
        resolve(PixelRNN.Config, PixelRNN.presets, PRESETS["smoke"], {"layer": "column"})
    info = DataInfo("t", "dynamic", (1, 4, 4))
    with pytest.raises(GenbenchError, match="odd"):
        PixelRNN(PixelRNN.Config(row_kernel=2), info)


@pytest.mark.parametrize("layer", ["diagonal", "row"])
def test_smoke_run_records_the_exact_likelihood(tmp_path, layer):
    """`genbench run pixelrnn --preset smoke [--set layer=row]`: trains, samples, scores test_exact."""
    assert "exact" in capabilities(tiny((1, 2, 2)))
    if layer == "diagonal":  # the default
        metrics = smoke_run_metrics("pixelrnn", tmp_path, "exact")
    else:
        out = CliRunner().invoke(app, ["run", "pixelrnn", "--dataset", "synthetic", "--preset", "smoke",
                                       "--set", "layer=row", "--results", str(tmp_path),
                                       "--metrics", "exact"], env={"COLUMNS": "200"})
        assert out.exit_code == 0, out.output
        metrics = json.loads(next(tmp_path.glob("synthetic/pixelrnn/*/metrics.json")).read_text())
    run_dir = next(tmp_path.glob("synthetic/pixelrnn/*"))
    assert json.loads((run_dir / "config.json").read_text())["model_config"]["layer"] == layer
    assert -784 * math.log(2) < metrics["test_exact"] < 0  # binarized 28x28: above uniform
    assert metrics["test_exact_bpd"] == pytest.approx(-metrics["test_exact"] / (784 * math.log(2)))
    assert (run_dir / "samples.png").exists()
