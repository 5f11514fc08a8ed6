"""Network building blocks shared by the model plugins (no model lives here).

Two shapes: an MLP for small images (28x28, flattened) and the DCGAN-style convolutional
stack for 64x64 RGB (Radford et al. 2016), which CelebA models share. The adversarial
models (GAN, DCGAN, VAE-GAN) add a 28x28 convolutional pair, maxout units and DCGAN's
initialisation; their losses, step and divergence check are in :mod:`genbench.kit.adversarial`,
beside their hooks. Every model builds its optimizer with :func:`adam`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import GenbenchError
from genbench.ranges import one_of, positive

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU, "softplus": nn.Softplus,
}


def activation(name: str) -> nn.Module:
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; use one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(sizes: Sequence[int], act: str = "relu", *, final_act: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``act`` between them."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or final_act:
            layers.append(activation(act))
    return nn.Sequential(*layers)


@dataclass(frozen=True)
class AutoencoderConfig:
    """The encoder/decoder settings of the VAE, AE and CVAE: one class, so the three are
    compared network for network."""

    hidden: tuple[int, ...] = positive((400,))  # MLP hidden sizes (28x28); 64x64 uses the conv stack
    latent_dim: int = positive(20)
    activation: str = one_of("relu", ACTIVATIONS)
    lr: float = positive(1e-3)


# Kingma & Welling (2013) used 500 tanh hidden units on MNIST (paper); quick is 400-20 ReLU.
AUTOENCODER_PRESETS = {
    "smoke": {"hidden": (64,), "latent_dim": 8},
    "quick": {"hidden": (400,), "latent_dim": 20},
    "paper": {"hidden": (500,), "latent_dim": 20, "activation": "tanh"},
}


def is_conv_shape(shape: tuple[int, int, int]) -> bool:
    """64x64 images get the convolutional stack; anything smaller an MLP."""
    return shape[1] == 64 and shape[2] == 64


class ConvEncoder64(nn.Module):
    """(N, C, 64, 64) -> (N, out_features): four stride-2 convolutions, as DCGAN's D."""

    def __init__(self, channels: int, out_features: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2),  # 32x32
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),  # 16x16
            nn.Conv2d(2 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),  # 8x8
            nn.Conv2d(4 * w, 8 * w, 4, 2, 1), nn.BatchNorm2d(8 * w), nn.LeakyReLU(0.2),  # 4x4
            nn.Flatten(), nn.Linear(8 * w * 16, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters, same state_dict) computed as one matmul on a
    CPU where oneDNN's transposed convolution is slow.

    Two cases dominate a generator's cost in HMC (AIS and BDMC run it forward and back
    thousands of times): the first layer, from a 1x1 code, is a plain matmul; the output
    layer, with 1 or 3 channels, runs at a few percent of the matmul peak in oneDNN, while
    the same product written as a matmul into columns and ``F.fold`` (col2im) runs several
    times faster (``benchmarks/bench_generator.py``). Other shapes, and every device but
    the CPU, take the library's path.
    """

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        plain = (x.device.type == "cpu" and x.dim() == 4 and output_size is None and self.groups == 1
                 and self.dilation == (1, 1) and self.padding_mode == "zeros")
        if plain and x.shape[-2:] == (1, 1) and self.padding == (0, 0) and self.output_padding == (0, 0):
            out = (x.flatten(1) @ self.weight.flatten(1)).view(x.shape[0], self.out_channels,
                                                                *self.kernel_size)
            return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
        if plain and self.out_channels <= 4:
            return self._by_fold(x)
        return super().forward(x, output_size)

    def _by_fold(self, x: torch.Tensor) -> torch.Tensor:
        """Each input pixel's contribution (a matmul into kernel-sized patches), summed into
        the output by ``F.fold``: exactly the transposed convolution's definition."""
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh = (h - 1) * sh - 2 * ph + kh + self.output_padding[0]
        ow = (w - 1) * sw - 2 * pw + kw + self.output_padding[1]
        # (out*kh*kw, c) @ (n, c, h*w): already fold's layout, and the gradient that flows
        # back to x is contiguous (a transposed one slows the next ReLU's backward 5x)
        cols = torch.bmm(self.weight.flatten(1).t().expand(n, -1, -1), x.flatten(2))
        out = F.fold(cols, (oh, ow), (kh, kw), padding=(ph, pw), stride=(sh, sw))
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


def _foldable(layer: nn.Module, bn: nn.Module) -> bool:
    """``bn`` is an affine map in eval mode (running statistics) that ``layer`` can absorb."""
    if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.running_mean is None:
        return False
    if isinstance(layer, nn.ConvTranspose2d):
        return layer.groups == 1
    return isinstance(layer, nn.Conv2d) or (isinstance(layer, nn.Linear)
                                            and bn.num_features == layer.out_features)


def _foldable_pairs(model: nn.Module) -> list[tuple[nn.Sequential, int]]:
    """(Sequential, index of a BatchNorm its previous layer can absorb) throughout ``model``."""
    return [(seq, i) for seq in model.modules() if isinstance(seq, nn.Sequential)
            for i in range(1, len(seq)) if _foldable(seq[i - 1], seq[i])]


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm that follows a convolution or
    a Linear in an ``nn.Sequential`` folded into that layer's weights, and replaced by
    ``nn.Identity`` (so module indices stay valid).

    In eval mode BatchNorm is a per-channel affine map; folding it saves its pass forward
    and, in HMC, its pass backward. The result equals the model's output up to float
    rounding; the model itself is left untouched (its checkpoint keeps its layout). A model
    with nothing to fold, or one that cannot be copied (it holds an open file, say), is
    returned as it is: folding only saves time.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

    if not _foldable_pairs(model):
        return model
    try:
        fused = copy.deepcopy(model).eval()
    except (TypeError, copy.Error, RuntimeError):
        return model
    for seq, i in _foldable_pairs(fused):
        layer, bn = seq[i - 1], seq[i]
        if isinstance(layer, nn.ConvTranspose2d):
            seq[i - 1] = fuse_conv_bn_eval(layer, bn, transpose=True)
        elif isinstance(layer, nn.Conv2d):
            seq[i - 1] = fuse_conv_bn_eval(layer, bn)
        else:
            seq[i - 1] = fuse_linear_bn_eval(layer, bn)
        seq[i] = nn.Identity()
    return fused


class ConvDecoder64(nn.Module):
    """(N, latent) -> (N, C, 64, 64) logits: DCGAN's generator with transposed convolutions."""

    def __init__(self, latent_dim: int, channels: int, width: int = 64) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Unflatten(1, (latent_dim, 1, 1)),
            ConvTranspose2d(latent_dim, 8 * w, 4, 1, 0), nn.BatchNorm2d(8 * w), nn.ReLU(),  # 4
            ConvTranspose2d(8 * w, 4 * w, 4, 2, 1), nn.BatchNorm2d(4 * w), nn.ReLU(),  # 8
            ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(),  # 16
            ConvTranspose2d(2 * w, w, 4, 2, 1), nn.BatchNorm2d(w), nn.ReLU(),  # 32
            ConvTranspose2d(w, channels, 4, 2, 1),  # 64
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def build_encoder(shape: tuple[int, int, int], hidden: Sequence[int], out_features: int,
                  act: str) -> nn.Module:
    """x (N, C, H, W) -> (N, out_features), MLP or convolutional by image size."""
    c, h, w = shape
    if is_conv_shape(shape):
        return ConvEncoder64(c, out_features)
    return nn.Sequential(nn.Flatten(), mlp([c * h * w, *hidden, out_features], act))


def build_decoder(shape: tuple[int, int, int], hidden: Sequence[int], latent_dim: int,
                  act: str) -> nn.Module:
    """z (N, latent) -> logits (N, C, H, W), MLP or convolutional by image size."""
    c, h, w = shape
    if is_conv_shape(shape):
        return ConvDecoder64(latent_dim, c)
    return nn.Sequential(mlp([latent_dim, *hidden, c * h * w], act), nn.Unflatten(1, shape))


# -- 28x28 convolutional pair (DCGAN's shape scaled to MNIST-like data) -------------------
class ConvEncoder28(nn.Module):
    """(N, C, 28, 28) -> (N, out_features): three strided convolutions, DCGAN's D for MNIST.

    As in Radford et al. (2016): LeakyReLU(0.2) and no BatchNorm on the input layer.
    """

    def __init__(self, channels: int, out_features: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(channels, w, 4, 2, 1), nn.LeakyReLU(0.2),  # 14x14
            nn.Conv2d(w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.LeakyReLU(0.2),  # 7x7
            nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2),  # 4x4
            nn.Flatten(), nn.Linear(4 * w * 16, out_features),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder28(nn.Module):
    """(N, latent) -> (N, C, 28, 28) pre-activations: DCGAN's generator for MNIST."""

    def __init__(self, latent_dim: int, channels: int, width: int = 32) -> None:
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Unflatten(1, (latent_dim, 1, 1)),
            ConvTranspose2d(latent_dim, 4 * w, 7, 1, 0), nn.BatchNorm2d(4 * w), nn.ReLU(),  # 7
            ConvTranspose2d(4 * w, 2 * w, 4, 2, 1), nn.BatchNorm2d(2 * w), nn.ReLU(),  # 14
            ConvTranspose2d(2 * w, channels, 4, 2, 1),  # 28
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def conv_pair(shape: tuple[int, int, int], latent_dim: int, out_features: int,
              width: int) -> tuple[nn.Module, nn.Module]:
    """(encoder x -> out_features, decoder z -> pre-activation image) for 28x28 or 64x64."""
    c, h, w = shape
    if (h, w) == (28, 28):
        return ConvEncoder28(c, out_features, width), ConvDecoder28(latent_dim, c, width)
    if (h, w) == (64, 64):
        return ConvEncoder64(c, out_features, width), ConvDecoder64(latent_dim, c, width)
    raise GenbenchError(f"the convolutional models take 28x28 or 64x64 images, not {h}x{w}; "
                        "use an MLP model (vae, gan) for this dataset")


def split_head(encoder: nn.Module) -> tuple[nn.Sequential, nn.Module]:
    """(body, head) of a ConvEncoder28/64: the flattened last hidden layer and the final
    Linear. VAE-GAN measures reconstructions on the body's output (Larsen et al. 2016)."""
    net = encoder.net
    return net[:-1], net[-1]


def dcgan_init(module: nn.Module) -> None:
    """Radford et al. (2016): all weights from N(0, 0.02); BatchNorm scales from N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Maxout(nn.Module):
    """Maxout units (Goodfellow et al. 2013): the max over ``pieces`` linear maps.

    The discriminator of the original GAN (Goodfellow et al. 2014) is a maxout network.
    """

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)  # (N, out * pieces)
        return h.view(x.shape[0], -1, self.pieces).amax(-1)  # (N, out)


def adam(params, lr: float, betas: tuple[float, float] = (0.9, 0.999), *,
         fused: bool = True) -> torch.optim.Adam:
    """Adam, the one way genbench's models build it: the fused kernel where this torch has
    one for the device, else the foreach step.

    The fused step reads and writes each parameter once; on a 2-core CPU it made a quick
    VAE epoch about 15% faster than the foreach step (benchmarks/bench_train.py). Its results
    differ from the foreach step's in the last bits, so ``fused=False`` keeps the foreach step
    for the models recorded with it (CVAE, M2, DRAW, PixelCNN, VAE-GAN): their numbers stay
    bit-identical.
    """
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, betas=betas, fused=True)
        except (RuntimeError, TypeError, ValueError):  # torch < 2.4 on CPU
            pass
    return torch.optim.Adam(params, lr=lr, betas=betas, foreach=True)


# The GAN step and its helpers live in genbench.kit.adversarial, beside the hooks that use them;
# `from genbench.nn import adversarial_step` (the old path) still works.
_MOVED_TO_ADVERSARIAL = ("adversarial_optimizers", "adversarial_step", "check_discriminator",
                         "discriminator_loss", "discriminator_stats", "frozen", "generator_loss")


def __getattr__(name: str) -> object:
    if name in _MOVED_TO_ADVERSARIAL:
        from genbench.kit import adversarial

        return getattr(adversarial, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
