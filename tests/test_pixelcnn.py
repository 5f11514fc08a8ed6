"""PixelCNN: causal masks, a normalized likelihood, the cached sampler, a smoke run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from PIL import Image
from run_folders import smoke_run_metrics

from genbench.contract import Batch, DataInfo, capabilities, optimizer_dict, step_model
from genbench.galleries import render
from genbench.metrics.exact import exact_log_likelihood
from genbench.plugins import load_plugins
from genbench.registry import get_model

load_plugins()
PixelCNN = get_model("pixelcnn").cls


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: see conftest


def tiny(shape, observation="bernoulli", seed=0, **cfg) -> torch.nn.Module:
    torch.manual_seed(seed)
    info = DataInfo("t", "continuous" if observation == "gaussian" else "dynamic", shape,
                    num_classes=3, observation=observation)
    config = PixelCNN.Config(**{"channels": 4, "layers": 3, "head": 8, **cfg})
    model = PixelCNN(config, info).double()
    # random biases and weights far from zero so no gradient vanishes by accident
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.5)
    return model


def dependencies(model, x: torch.Tensor, y=None) -> list[set[int]]:
    """For each output pixel i (raster order), the input pixels j with d logit_i / d x_j != 0.

    Channels: inputs are pooled over channels (pixel j), outputs every channel and level."""
    c, h, w = x.shape[1:]
    x = x.clone().requires_grad_(True)
    cond = model.cond_vector(y, 1)
    logits = model.logits(x, cond)  # (1, C, levels, H, W)
    out = []
    for i in range(h * w):
        g, = torch.autograd.grad(logits[0, :, :, i // w, i % w].sum(), x, retain_graph=True)
        out.append(set((g[0].abs().sum(0).flatten() != 0).nonzero().flatten().tolist()))
    return out


@pytest.mark.parametrize("shape,observation,cfg", [
    ((1, 6, 5), "bernoulli", {}),
    ((1, 7, 7), "bernoulli", {"first_kernel": 5, "kernel": 5, "layers": 4}),
    ((3, 5, 6), "gaussian", {}),  # RGB: every channel of pixel i sees only pixels < i
    ((1, 6, 5), "bernoulli", {"conditional": True}),
])
def test_masks_are_causal_and_leave_no_blind_spot(shape, observation, cfg):
    """d out_i / d x_j == 0 for every j >= i (mask A first, B after, both stacks, gates), and
    != 0 for every j < i: the stacks remove the blind spot of a masked 3x3 stack."""
    model = tiny(shape, observation, **cfg)
    x = torch.rand(1, *shape, dtype=torch.float64)
    y = torch.tensor([1]) if cfg.get("conditional") else None
    deps = dependencies(model, x, y)
    for i, seen in enumerate(deps):
        assert all(j < i for j in seen), f"output {i} sees inputs {sorted(j for j in seen if j >= i)}"
    # with enough layers the receptive field covers the whole past (no blind spot)
    assert deps[-1] == set(range(len(deps) - 1))


def test_mask_a_alone_excludes_the_current_pixel():
    """One layer (mask A only): pixel i sees its left neighbours and the rows above, not itself."""
    model = tiny((1, 4, 4), layers=1, first_kernel=3)
    deps = dependencies(model, torch.rand(1, 1, 4, 4, dtype=torch.float64))
    assert deps[0] == set()
    assert deps[5] == {0, 1, 2, 4}  # (1, 1): row 0 columns 0-2 and (1, 0)


def test_binary_likelihood_sums_to_one_over_all_images():
    """2x2 binary images: exp(log_prob) over all 16 sums to 1."""
    model = tiny((1, 2, 2))
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    total = model.log_prob(xs.view(16, 1, 2, 2)).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-12)


def test_categorical_likelihood_is_a_density():
    """Continuous data, 1x2 image (256^2 = 65,536 value pairs): sum_v P(v) = 1, and the stored
    number is the density log P(v) + D log 256 of any x in v's dequantization cell."""
    model = tiny((1, 1, 2), "gaussian", channels=2, layers=2).float()  # float32: 3x faster
    v = torch.tensor(list(itertools.product(range(256), repeat=2)), dtype=torch.float32)
    x = ((v + 0.5) / 256).view(-1, 1, 1, 2)
    with torch.no_grad():
        log_density = model.log_prob(x)
    assert torch.logsumexp(log_density.double() - 2 * math.log(256), 0).exp().item() == \
        pytest.approx(1, abs=1e-5)
    u = torch.rand(v.shape, dtype=v.dtype, generator=torch.Generator().manual_seed(0))
    jitter = ((v + u * 0.999) / 256).view(-1, 1, 1, 2)
    torch.testing.assert_close(model.log_prob(jitter[:100]).detach(), log_density[:100])


def test_two_channel_categorical_sums_to_one_over_values():
    """2x1 image with 2 channels, values restricted to 2 levels each: a model whose logits put
    all mass on {0, 255} sums to 1 over the 2^4 images (every channel normalized)."""
    model = tiny((2, 2, 1), "gaussian")
    with torch.no_grad():
        bias = model.head[-1].bias.view(2, 256)
        bias[:, 1:255] = -1e4  # mass only on the two extreme values
    v = torch.tensor(list(itertools.product([0, 255], repeat=4)), dtype=torch.float64)
    x = ((v + 0.5) / 256).view(16, 2, 2, 1)
    total = (model.log_prob(x) - 4 * math.log(256)).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("observation,cfg", [("bernoulli", {}), ("gaussian", {}),
                                             ("bernoulli", {"conditional": True, "layers": 5})])
def test_cached_sampler_draws_the_same_images(observation, cfg):
    """The cached sampler (vertical rows once, cropped horizontal windows) against one full
    network pass per pixel, from the same uniforms: identical images."""
    model = tiny((1, 6, 9), observation, **cfg)
    u = torch.rand(5, 1, 6, 9, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 0, 1]) if cfg.get("conditional") else None
    fast = model.sample_from_noise(u, y)
    slow = model.sample_from_noise(u, y, cached=False)
    assert torch.equal(fast, slow)
    assert fast.unique().numel() > 1


def test_samples_follow_the_model():
    """Sampled images' frequencies match exp(log_prob) on the 2x2 binary space (chi-square)."""
    model = tiny((1, 2, 2))
    gen = torch.Generator().manual_seed(3)
    n = 4000
    x = model.sample(n, gen)
    index = (x.view(n, 4) * torch.tensor([8.0, 4, 2, 1], dtype=torch.float64)).sum(1).long()
    counts = torch.bincount(index, minlength=16).double()
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    expected = model.log_prob(xs.view(16, 1, 2, 2)).exp().detach() * n
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 37.7  # chi-square, 15 degrees of freedom, p = 0.001


def test_completion_keeps_the_given_rows():
    model = tiny((1, 6, 5))
    x = (torch.rand(4, 1, 6, 5, dtype=torch.float64) < 0.5).double()
    out = model.complete(x, 3, torch.Generator().manual_seed(0))
    assert torch.equal(out[:, :, :3], x[:, :, :3])


def test_training_step_lowers_the_loss():
    """Automatic optimization: the loss carries gradients and the runner's step lowers it."""
    model = tiny((1, 4, 4)).float()
    x = (torch.rand(16, 1, 4, 4, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    assert model.training_step(Batch(x))["loss"].requires_grad
    opts = optimizer_dict(model.configure_optimizers())
    first = step_model(model, Batch(x), opts)["loss"].item()
    for _ in range(20):
        last = step_model(model, Batch(x), opts)["loss"].item()
    assert last < first


def test_exact_metric_does_not_depend_on_the_chunk():
    model = tiny((1, 5, 5), "gaussian")
    x = torch.rand(7, 1, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    whole = exact_log_likelihood(model, x, chunk=100)
    torch.testing.assert_close(exact_log_likelihood(model, x, chunk=3), whole, rtol=0, atol=1e-9)
    torch.testing.assert_close(whole, model.log_prob(x).detach())


def test_smoke_run_records_the_exact_likelihood(tmp_path):
    """`genbench run pixelcnn --preset smoke`: trains, samples, and scores test_exact."""
    assert "exact" in capabilities(tiny((1, 2, 2)))
    metrics = smoke_run_metrics("pixelcnn", tmp_path, "exact")
    # binarized 28x28: between a uniform model (-784 log 2) and 0
    assert -784 * math.log(2) < metrics["test_exact"] < 0
    assert metrics["test_exact_bpd"] == pytest.approx(-metrics["test_exact"] / (784 * math.log(2)))
    run_dir = next(tmp_path.glob("synthetic/pixelcnn/*"))
    assert (run_dir / "samples.png").exists()
    # the completions gallery: 3 rows of [given half, 2 completions, original], 28x28 + padding
    png = render(run_dir, "completions", tmp_path / "c.png", n=3, samples=2)
    grid = torch.from_numpy(np.array(Image.open(png))).float() / 255
    assert grid.shape == (2 + 3 * 30, 2 + 4 * 30)
    cell = lambda r, c: grid[2 + 30 * r:30 + 30 * r, 2 + 30 * c:30 + 30 * c]  # noqa: E731
    for r in range(3):  # every completion keeps the given top half, and the original's top
        for c in (1, 2):
            torch.testing.assert_close(cell(r, c)[:14], cell(r, 3)[:14])
        assert torch.allclose(cell(r, 0)[14:], torch.tensor(128 / 255))  # grey: not shown
