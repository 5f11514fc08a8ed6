"""Observation models p(x|z) as torch.distributions, shared by every decoder-based model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Distribution, Independent, Normal

from genbench.contract import DataInfo, Observation


def observation_model(kind: Observation, logits: torch.Tensor,
                      log_std: torch.Tensor | None = None) -> Distribution:
    """p(x|z) with event shape (C, H, W) from decoder logits (N, C, H, W).

    Bernoulli for binarized data; for continuous data a Gaussian around ``sigmoid(logits)``
    with one scalar standard deviation ``exp(log_std)`` (Wu et al. 2017 score every model
    under a spherical Gaussian).
    """
    if kind == "bernoulli":
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)
    if log_std is None:
        raise ValueError("a Gaussian observation model needs log_std")
    mean = torch.sigmoid(logits)
    return Independent(Normal(mean, log_std.exp().expand_as(mean), validate_args=False), 3)


def observation_log_prob(kind: Observation, logits: torch.Tensor, x: torch.Tensor,
                         log_std: torch.Tensor | None = None) -> torch.Tensor:
    """log p(x|z) per image (N,), the fast path for training.

    Equal to ``observation_model(...).log_prob(x)``; the Bernoulli case is one fused
    BCE-with-logits kernel, which matters because on CPU the elementwise work costs as
    much as the decoder's matmul.
    """
    if kind == "bernoulli":
        bce = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        return -bce.flatten(1).sum(1)
    assert log_std is not None
    mean = torch.sigmoid(logits)
    d = x[0].numel()
    sq = (x - mean).flatten(1).pow(2).sum(1)
    return -0.5 * sq * torch.exp(-2 * log_std) - d * (log_std + 0.5 * torch.log(
        torch.tensor(2 * torch.pi, device=x.device)))


def learned_log_std(info: DataInfo) -> torch.nn.Parameter:
    """log of the Gaussian observation model's one scalar std, -1 at the start; learned on
    continuous data, fixed (and unused) under a Bernoulli."""
    return torch.nn.Parameter(torch.tensor(-1.0), requires_grad=info.observation == "gaussian")
