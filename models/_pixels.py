"""What the pixel-by-pixel models (PixelCNN, PixelRNN) share: the output head and the
per-pixel likelihood it defines, so both score and sample the same observation model.

- binarized data: a Bernoulli per pixel (one logit); ``log_prob`` is log P(x), in nats.
- continuous data (8-bit values dequantized as (v + u) / 256, u ~ U[0, 1)): a 256-way
  categorical over the value v = floor(256 x); under uniform dequantization the density on
  [0, 1]^D is p(x) = P(v) * 256^D, so ``log_prob`` is the continuous log-density
  log P(v) + D log 256, comparable with the other models' continuous numbers.

A file starting with ``_`` is not a plugin (genbench.plugins skips it): import it as
``genbench_models._pixels``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genbench.contract import DataInfo

LEVELS = 256  # 8-bit values on continuous data


def levels_for(info: DataInfo) -> int:
    """Outputs per pixel and channel: 256 logits on continuous data, 1 Bernoulli logit else."""
    return LEVELS if info.observation == "gaussian" else 1


def shift_down(t: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> the same shape, row r holding row r - 1 (zeros in row 0)."""
    return F.pad(t, (0, 0, 1, 0))[:, :, :-1]


def output_head(channels: int, hidden: int, outputs: int) -> nn.Sequential:
    """ReLU, 1x1 conv, ReLU, 1x1 conv (van den Oord et al. 2016): per-pixel logits."""
    return nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 1), nn.ReLU(),
                         nn.Conv2d(hidden, outputs, 1))


class PixelLikelihood:
    """Mixin for an nn.Module with ``info`` and ``levels`` (:func:`levels_for`): data <->
    what the likelihood is over, the log-likelihood of logits, inverse-CDF draws."""

    info: DataInfo
    levels: int

    @property
    def categorical(self) -> bool:
        return self.levels > 1

    def to_values(self, x: torch.Tensor) -> torch.Tensor:
        """Data in [0, 1] -> what the likelihood is over: {0, 1} pixels or 8-bit values (long)."""
        if self.categorical:
            return (x * LEVELS).floor().clamp(0, LEVELS - 1).long()
        return x

    def to_inputs(self, values: torch.Tensor) -> torch.Tensor:
        """The network's input: the pixel itself, or the 8-bit value scaled to [0, 1]."""
        return values.float() / (LEVELS - 1) if self.categorical else values

    def to_images(self, values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Sampled values -> images in [0, 1]: {0, 1} pixels, or 8-bit values at their bin
        centres (v + 0.5) / 256."""
        if self.categorical:
            return (values.to(dtype) + 0.5) / LEVELS
        return values

    def pixel_log_prob(self, logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """log-likelihood per image (N,) of values (N, C, H, W) under logits (N, C, levels, H, W)."""
        if not self.categorical:
            ll = -F.binary_cross_entropy_with_logits(logits[:, :, 0], values.to(logits.dtype),
                                                     reduction="none")
            return ll.flatten(1).sum(1)
        n, c, k, rows, cols = logits.shape
        ll = -F.cross_entropy(logits.view(n * c, k, rows, cols), values.view(n * c, rows, cols),
                              reduction="none")  # (N*C, H, W): log P(v_i | v_<i)
        return ll.view(n, -1).sum(1) + self.info.dim * math.log(LEVELS)

    def _draw(self, logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Inverse CDF: logits (n, C, levels), uniforms (n, C) -> values (n, C)."""
        if not self.categorical:
            return (u < torch.sigmoid(logits[..., 0])).to(u.dtype)
        cdf = logits.softmax(-1).cumsum(-1)
        return (cdf < u[..., None]).sum(-1).clamp(max=LEVELS - 1)
