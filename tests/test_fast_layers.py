"""genbench.nn's faster formulations compute the library's functions: the matmul/fold
transposed convolution equals ``nn.ConvTranspose2d`` (values and every gradient), and
BatchNorm folded for evaluation equals the model it was folded from."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genbench.contract import DataInfo
from genbench.nn import ConvTranspose2d, fuse_batchnorm

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPES = [  # (in, out, kernel, stride, padding, output_padding, input size)
    (100, 128, 7, 1, 0, 0, 1),  # the 28x28 generator's first layer: a matmul from a 1x1 code
    (64, 1, 4, 2, 1, 0, 14),  # its output layer: fold
    (16, 3, 4, 2, 1, 0, 32),  # the 64x64 generator's RGB output layer
    (8, 2, 3, 2, 1, 1, 5),  # odd kernel with output padding
    (8, 3, (3, 5), (1, 2), (0, 2), 0, 6),  # rectangular kernel, unequal strides
    (32, 16, 4, 2, 1, 0, 7),  # a middle layer: the library's own path
]


@pytest.mark.parametrize("shape", SHAPES)
def test_conv_transpose_equals_torch_in_value_and_gradients(shape):
    cin, cout, k, s, p, op, size = shape
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(cin, cout, k, s, p, output_padding=op).double()
    fast = ConvTranspose2d(cin, cout, k, s, p, output_padding=op).double()
    fast.load_state_dict(ref.state_dict())  # same parameters, same state_dict keys
    x = torch.randn(5, cin, size, size, dtype=torch.float64)
    xr, xf = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out_ref, out_fast = ref(xr), fast(xf)
    assert out_fast.shape == out_ref.shape
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(out_ref)
    grads_ref = torch.autograd.grad(out_ref, [xr, ref.weight, ref.bias], g)
    grads_fast = torch.autograd.grad(out_fast, [xf, fast.weight, fast.bias], g)
    for a, b in zip(grads_fast, grads_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_conv_transpose_input_gradient_is_contiguous():
    """A transposed gradient flowing back slows the next ReLU's backward several times."""
    layer = ConvTranspose2d(64, 1, 4, 2, 1)
    x = torch.randn(3, 64, 14, 14, requires_grad=True)
    out = layer(x)
    (g,) = torch.autograd.grad(out, x, torch.randn_like(out))
    assert g.is_contiguous()


def _trained_bn_stats(model: nn.Module, z_dim: int) -> None:
    """Move every BatchNorm's running statistics off their initial (identity) values."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model.generate(torch.randn(32, z_dim) * 2 + 0.5)
    model.eval()


@pytest.mark.parametrize("name", ["dcgan", "gan", "lapgan"])
def test_fused_batchnorm_model_equals_model(name):
    from genbench.plugins import load_plugins
    from genbench.registry import get_model

    load_plugins()
    cls = get_model(name).cls
    info = DataInfo("mnist", "dynamic", (1, 28, 28), 10)
    torch.manual_seed(0)
    model = cls(cls.Config(), info)
    z_dim = model.prior().event_shape[-1]
    _trained_bn_stats(model, z_dim)
    fused = fuse_batchnorm(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in fused.modules()), \
        "every BatchNorm after a layer is folded"
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()), \
        "the model itself is untouched"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    z = torch.randn(64, z_dim)
    with torch.no_grad():
        torch.testing.assert_close(fused.generate(z), model.generate(z), rtol=1e-5, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fuse_batchnorm_leaves_batch_statistics_alone():
    """A BatchNorm without running statistics normalizes by the batch even in eval mode:
    not an affine map, so it is not folded."""
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6, track_running_stats=False))
    fused = fuse_batchnorm(net)
    assert isinstance(fused[1], nn.BatchNorm1d)
    x = torch.randn(8, 4)
    torch.testing.assert_close(fused(x), net.eval()(x))


def test_fuse_batchnorm_returns_the_model_when_there_is_nothing_to_fold_or_it_cannot_be_copied(tmp_path):
    """Folding only saves time: a model without BatchNorm is not copied, and one that cannot
    be copied (an open file among its attributes) is evaluated as it is, not failed."""
    plain = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
    assert fuse_batchnorm(plain) is plain

    class HoldsAFile(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
            self.log = open(tmp_path / "log.txt", "w")  # noqa: SIM115  (deepcopy cannot copy it)

    model = HoldsAFile().eval()
    assert fuse_batchnorm(model) is model
    model.log.close()
