"""Gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders"): an exact, autoregressive likelihood over pixels in raster order,

    log p(x) = sum_i log p(x_i | x_<i).

Two stacks remove the blind spot of the original masked convolutions (van den Oord et al.
2016, "Pixel Recurrent Neural Networks"): a *vertical* stack whose (k/2+1) x k convolution
sees the rows up to and including its own, fed to the horizontal stack shifted down by one
row (so only rows strictly above), and a *horizontal* stack whose 1 x (k/2+1) convolution
sees the pixels to the left in the same row: mask A on the first layer (the current pixel
excluded), mask B after (included), a residual connection from the second layer on. Each
layer is gated, tanh(W_f * x + V_f h) * sigmoid(W_g * x + V_g h), with h the conditioning
vector (one-hot class or the attribute vector) when ``conditional`` is set (sec. 2.3).

Observation models:

- binarized data: a Bernoulli per pixel; ``log_prob`` is log P(x), in nats.
- continuous data (8-bit values dequantized as (v + u) / 256, u ~ U[0, 1)): a 256-way
  categorical over the value v = floor(256 x); under uniform dequantization the density on
  [0, 1]^D is p(x) = P(v) * 256^D, so ``log_prob`` returns the *continuous log-density*
  log P(v) + D log 256, comparable with the other models' continuous numbers.

Channels (RGB) are conditionally independent given the previous pixels, p(x_i | x_<i) =
prod_c p(x_i,c | x_<i): a valid, weaker factorization than the paper's R -> G -> B order
within a pixel (which needs channel-group masks; not implemented).

Sampling is pixel by pixel from noise drawn up front (one uniform per pixel and channel,
inverse-CDF), so the cached sampler (:meth:`PixelCNN.sample_from_noise`) and the
straightforward one (one full network pass per pixel, ``cached=False``) give the same
images for the same noise. The cache: the vertical stack's input to row i depends on rows
< i only, so it is computed once per row (on those rows), and the horizontal stack and the
output head then run on that one row per pixel: about H times fewer FLOPs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.data.bundle import DataBundle
from genbench.errors import GenbenchError
from genbench.kit.latent import label_features, random_labels
from genbench.kit.nn import adam
from genbench.settings import positive

# isort: split
# (genbench_models sorts as first- or third-party depending on the checkout)
from genbench_models._pixels import LEVELS, PixelLikelihood, levels_for, output_head, shift_down

__all__ = ["LEVELS", "PixelCNN", "shift_down"]  # LEVELS, shift_down: shared, re-exported


@dataclass(frozen=True)
class PixelCNNConfig:
    channels: int = positive(32)  # p: feature maps per stack (the gate sees 2p)
    layers: int = positive(6)  # gated layers, the first (mask A) included
    first_kernel: int = positive(7)  # k of the first layer (van den Oord et al.: 7x7 then 3x3)
    kernel: int = positive(3)  # k of the later layers
    head: int = positive(64)  # hidden 1x1 layer of the output head
    conditional: bool = False  # condition every gate on the label vector (sec. 2.3)
    lr: float = positive(1e-3)


class GatedLayer(nn.Module):
    """One gated layer of both stacks (van den Oord et al. 2016, Fig. 2)."""

    def __init__(self, c_in: int, p: int, k: int, first: bool, cond_dim: int) -> None:
        super().__init__()
        self.k, self.first = k, first
        self.v_conv = nn.Conv2d(c_in, 2 * p, (k // 2 + 1, k))  # rows r - k//2 .. r
        self.h_conv = nn.Conv2d(c_in, 2 * p, (1, k // 2 + 1))  # columns c - k//2 .. c
        self.v_to_h = nn.Conv2d(2 * p, 2 * p, 1)
        self.h_out = nn.Conv2d(p, p, 1)
        mask = torch.ones(1, 1, 1, k // 2 + 1)
        if first:
            mask[..., -1] = 0  # mask A: the current pixel is not its own input
        self.register_buffer("h_mask", mask)
        self.cond = nn.Linear(cond_dim, 4 * p, bias=False) if cond_dim else None

    def _cond(self, h: torch.Tensor | None) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        if self.cond is None or h is None:
            return 0.0, 0.0
        cv, ch = self.cond(h)[:, :, None, None].chunk(2, dim=1)  # (N, 2p, 1, 1) each
        return cv, ch

    def vertical(self, v: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Vertical stack on rows v (N, c_in, R, W): (pre-gate maps (N, 2p, R, W), output)."""
        k = self.k
        return self.vertical_padded(F.pad(v, (k // 2, k // 2, k // 2, 0)), h)

    def vertical_padded(self, v: torch.Tensor, h: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """The same on input already padded (k//2 rows above, k//2 columns each side)."""
        pre = self.v_conv(v) + self._cond(h)[0]
        return pre, gate(pre)

    def above(self, v_pre_above: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """What the horizontal stack adds from the rows above: V (v shifted down) + cond."""
        return self.v_to_h(v_pre_above) + self._cond(h)[1]

    def horizontal(self, x: torch.Tensor, above: torch.Tensor) -> torch.Tensor:
        """Horizontal stack on rows x (N, c_in, R, W), given :meth:`above` (N, 2p, R, W) for
        each of them; rows never see each other here."""
        k = self.k
        pre = F.conv2d(F.pad(x, (k // 2, 0, 0, 0)), self.h_conv.weight * self.h_mask,
                       self.h_conv.bias)
        out = self.h_out(gate(pre + above))
        return out if self.first else x + out  # residual from the second layer on


def gate(t: torch.Tensor) -> torch.Tensor:
    a, b = t.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class VerticalRows:
    """The vertical stack computed one row at a time while sampling.

    Row r of a layer's vertical maps depends on rows r - k//2 .. r of its input only, so
    each new row costs 1/H of a full pass. Each layer's input is kept zero-padded as
    :meth:`GatedLayer.vertical` pads it (k//2 rows above, k//2 columns each side).
    """

    def __init__(self, model: PixelCNN, inputs: torch.Tensor, h: torch.Tensor | None) -> None:
        n, _, rows, cols = inputs.shape
        self.layers, self.h, self.cols = model.layers, h, cols
        self.buffers = [inputs.new_zeros(n, layer.v_conv.in_channels, rows + layer.k // 2,
                                         cols + 2 * (layer.k // 2)) for layer in model.layers]
        zeros = inputs.new_zeros(n, 2 * model.config.channels, 1, cols)
        self.last = [zeros] * len(model.layers)  # pre-gate maps of the last row pushed

    def push(self, i: int, row: torch.Tensor) -> None:
        """Add row i (N, C, 1, W) of the image; compute row i of every layer."""
        t = row
        for n, (layer, buf) in enumerate(zip(self.layers, self.buffers, strict=True)):
            k2 = layer.k // 2
            buf[:, :, i + k2:i + k2 + 1, k2:k2 + self.cols] = t
            self.last[n], t = layer.vertical_padded(buf[:, :, i:i + k2 + 1], self.h)

    def above(self) -> list[torch.Tensor]:
        """Each layer's :meth:`GatedLayer.above` for the row after the last one pushed."""
        return [layer.above(pre, self.h) for layer, pre in zip(self.layers, self.last, strict=True)]


@register_model("pixelcnn")
class PixelCNN(PixelLikelihood, nn.Module):
    """Gated PixelCNN (van den Oord et al. 2016): exact log-likelihood, pixel-by-pixel sampling."""

    Config = PixelCNNConfig
    conditional = False  # set per instance from the config
    presets = {
        "smoke": {"channels": 8, "layers": 2, "head": 16},
        "quick": {"channels": 16, "layers": 6, "head": 32, "lr": 3e-3, "epochs": 10},
        "paper": {"channels": 64, "layers": 12, "head": 256},
    }

    def __init__(self, config: PixelCNNConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.conditional = config.conditional
        self.levels = levels_for(info)  # 1: a Bernoulli logit
        cond_dim = 0
        if config.conditional:
            cond_dim = info.num_classes or info.num_attributes or 0
            if not cond_dim:
                raise GenbenchError(f"pixelcnn conditional=true needs labels; dataset "
                                    f"{info.name!r} has none")
        if config.layers < 1 or config.kernel % 2 == 0 or config.first_kernel % 2 == 0:
            raise GenbenchError("pixelcnn: layers >= 1 and odd kernel sizes")
        c, p = info.shape[0], config.channels
        self.layers = nn.ModuleList(
            [GatedLayer(c, p, config.first_kernel, True, cond_dim)]
            + [GatedLayer(p, p, config.kernel, False, cond_dim) for _ in range(config.layers - 1)])
        self.head = output_head(p, config.head, c * self.levels)
        self.register_buffer("attribute_freq", torch.full((info.num_attributes or 0,), 0.5))

    # -- the network --------------------------------------------------------------------
    def cond_vector(self, y: torch.Tensor | None, n: int) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return label_features(y, self.info, self.dtype).expand(n, -1)

    def vertical(self, x: torch.Tensor, h: torch.Tensor | None) -> list[torch.Tensor]:
        """Each layer's vertical pre-gate maps (N, 2p, R, W) on rows x (N, C, R, W)."""
        out, v = [], x
        for layer in self.layers:
            pre, v = layer.vertical(v, h)
            out.append(pre)
        return out

    def horizontal(self, x: torch.Tensor, above: list[torch.Tensor]) -> torch.Tensor:
        """Logits (N, C, levels, R, W) for rows x given each layer's :meth:`GatedLayer.above`."""
        t = x
        for layer, a in zip(self.layers, above, strict=True):
            t = layer.horizontal(t, a)
        logits = self.head(t)  # (N, C * levels, R, W)
        n, _, r, w = logits.shape
        return logits.view(n, self.info.shape[0], self.levels, r, w)

    def logits(self, inputs: torch.Tensor, h: torch.Tensor | None) -> torch.Tensor:
        """One full pass: logits (N, C, levels, H, W) of every p(x_i | x_<i)."""
        above = [layer.above(shift_down(v), h)
                 for layer, v in zip(self.layers, self.vertical(inputs, h), strict=True)]
        return self.horizontal(inputs, above)

    @property
    def reach(self) -> int:
        """How many columns to its left an output sees through the horizontal stack."""
        return sum(layer.k // 2 for layer in self.layers)

    # -- capabilities -------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log-likelihood per image, (N,), in nats.

        Binarized data: log P(x). Continuous data: the log-density of the dequantized image,
        log P(v) + D log 256 with v = floor(256 x) its 8-bit values (uniform dequantization).
        """
        values = self.to_values(x)
        logits = self.logits(self.to_inputs(values).to(self.dtype), self.cond_vector(y, x.shape[0]))
        return self.pixel_log_prob(logits, values)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               y: torch.Tensor | None = None) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1]: {0, 1} pixels, or 8-bit values at their bin
        centres (v + 0.5) / 256 on continuous data."""
        u = torch.rand(n, *self.info.shape, generator=generator, device=self.device,
                       dtype=self.dtype)
        if self.conditional and y is None:
            y = self.draw_labels(n, generator)
        return self.sample_from_noise(u, y)

    @torch.no_grad()
    def complete(self, x: torch.Tensor, rows: int, generator: torch.Generator | None = None,
                 y: torch.Tensor | None = None) -> torch.Tensor:
        """Keep the first ``rows`` rows of x and sample the rest (the completions gallery)."""
        u = torch.rand(x.shape, generator=generator, device=self.device, dtype=self.dtype)
        return self.sample_from_noise(u, y, given=x, from_row=rows)

    def draw_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return random_labels(self.info, n, generator, self.device, self.attribute_freq)

    @torch.no_grad()
    def sample_from_noise(self, u: torch.Tensor, y: torch.Tensor | None = None, *,
                          cached: bool = True, given: torch.Tensor | None = None,
                          from_row: int = 0) -> torch.Tensor:
        """Images drawn pixel by pixel with uniforms u (n, C, H, W), by inverse CDF.

        ``cached=False`` is the straightforward sampler (a full network pass per pixel), kept
        for the benchmark and the test that both draw the same images. ``given`` and
        ``from_row``: rows before ``from_row`` are taken from ``given`` (completions).
        """
        n, _, rows, cols = u.shape
        h = self.cond_vector(y, n)
        values = torch.zeros(u.shape, device=u.device,
                             dtype=torch.long if self.categorical else u.dtype)
        if given is not None and from_row:
            values[:, :, :from_row] = self.to_values(given[:, :, :from_row])
        inputs = self.to_inputs(values).to(u.dtype)
        cache = VerticalRows(self, inputs, h)
        for i in range(from_row):
            cache.push(i, inputs[:, :, i:i + 1])
        for i in range(from_row, rows):
            above = cache.above() if cached else None  # constant along row i
            for j in range(cols):
                if cached:  # only the columns the output at j sees (exact: see `reach`)
                    c0 = max(0, j - self.reach)
                    logits = self.horizontal(inputs[:, :, i:i + 1, c0:j + 1],
                                             [a[..., c0:j + 1] for a in above])[..., 0, -1]
                else:
                    logits = self.logits(inputs, h)[..., i, j]  # (n, C, levels)
                values[:, :, i, j] = self._draw(logits, u[:, :, i, j])
                inputs[:, :, i, j] = self.to_inputs(values[:, :, i, j]).to(u.dtype)
            if cached:
                cache.push(i, inputs[:, :, i:i + 1])
        return self.to_images(values, u.dtype)

    @property
    def device(self) -> torch.device:
        return self.layers[0].h_mask.device

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].h_conv.weight.dtype

    # -- training -----------------------------------------------------------------------
    def on_train_start(self, data: DataBundle) -> None:
        if not self.conditional:
            return
        if data.train.y is None:
            raise GenbenchError(f"pixelcnn conditional=true needs labels; {data.info.name!r} has none")
        if self.info.num_attributes:  # sample() without labels draws attributes at these rates
            self.attribute_freq.copy_(data.train.y.float().mean(0))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr, fused=False)  # foreach: its recorded numbers

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The mean negative log-likelihood per image in nats (the runner steps Adam)."""
        y = batch.y if self.conditional else None
        return {"loss": -self.log_prob(batch.x, y).mean()}
