"""Gaussian latents and label inputs: the parts every VAE-like plugin would otherwise write out.

A diagonal-Gaussian encoder emits (mu, log sigma^2) side by side; :func:`split_gaussian`
makes that the q(z|x) distribution and :func:`reparameterize` draws z from it with
gradients (Kingma & Welling 2013, Sec. 2.4). :func:`gaussian_kl` is the closed-form KL to
N(0, I) of their Appendix B. Conditional models (CVAE, M2) share one
:class:`LabelledEncoder` q(z|x, y) and :func:`labelled_logits` for p(x|z, y).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from genbench.contract import DataInfo
from genbench.errors import GenbenchError
from genbench.kit.nn import activation, build_encoder, mlp


def standard_normal_prior(dim: int, like: torch.Tensor | nn.Module) -> Distribution:
    """N(0, I) over z, event shape (dim,), on the device and dtype of ``like`` (a tensor, or
    a module's first parameter)."""
    if isinstance(like, nn.Module):
        like = next(like.parameters())
    zero = like.new_zeros(dim)
    return Independent(Normal(zero, torch.ones_like(zero)), 1)


def split_gaussian(h: torch.Tensor) -> Distribution:
    """(..., 2D) encoder output as [mu, log sigma^2] -> the diagonal Gaussian q(z|x)."""
    mu, logvar = h.chunk(2, dim=-1)
    return Independent(Normal(mu, (0.5 * logvar).exp()), 1)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I): a draw from q(z|x) that gradients pass through."""
    eps = (torch.randn_like(mu) if generator is None else
           torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype))
    return mu + eps * (0.5 * logvar).exp()


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) per row, Kingma & Welling (2013) Appendix B:
    -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


# -- labels as network inputs (conditional models) ----------------------------------------
def label_width(info: DataInfo) -> int:
    """Width of the label vector the networks see: K classes (one-hot) or A attributes."""
    if info.num_classes:
        return info.num_classes
    if info.num_attributes:
        return info.num_attributes
    raise GenbenchError(f"dataset {info.name!r} has no labels; conditional models need class "
                        "labels or attributes (use mnist, mnist-5k, fashion-mnist or celeba)")


def label_features(y: torch.Tensor | None, info: DataInfo,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Labels as the float vectors the networks take: (N,) classes -> (N, K) one-hot.

    Float (N, K) rows are taken as given (soft or mixed labels); attributes pass through.
    A conditional model's encode/decode/generate take ``y=``; a caller that forgot it hears so.
    """
    if y is None:
        raise GenbenchError("this model is conditional: pass y= labels (the model sets "
                            "`conditional = True`)")
    if info.num_classes and not torch.is_floating_point(y):
        return F.one_hot(y.long(), info.num_classes).to(dtype)
    return y.to(dtype)


def random_labels(info: DataInfo, n: int, generator: torch.Generator | None, device: torch.device,
                attribute_freq: torch.Tensor | None = None) -> torch.Tensor:
    """n labels for sampling without given ones: uniform classes, or attributes at their rates."""
    if info.num_classes:
        return torch.randint(info.num_classes, (n,), generator=generator, device=device)
    assert attribute_freq is not None, "attribute labels are drawn at the training rates"
    return torch.bernoulli(attribute_freq.expand(n, -1), generator=generator)


class LabelledEncoder(nn.Module):
    """q(z|x, y) as Gaussian mean and log-variance heads, (N, ...) -> (N, 2 * latent_dim).

    The first layer on concat(x, y) is split into W_x x + W_y y (the same function), so a
    model that needs every label for one x (M2's sum over y) computes the x part once
    (:meth:`x_part`, then :meth:`given_x`).
    """

    def __init__(self, shape: tuple[int, int, int], hidden: Sequence[int], label_dim: int,
                 latent_dim: int, act: str) -> None:
        super().__init__()
        width = hidden[0]
        self.x_part = build_encoder(shape, (), width, act)  # (N, width), before activation
        self.y_part = nn.Linear(label_dim, width, bias=False)
        self.head = nn.Sequential(activation(act), mlp([*hidden, 2 * latent_dim], act))

    def given_x(self, hx: torch.Tensor, y_feat: torch.Tensor) -> torch.Tensor:
        """``hx`` = x_part(x) (..., width), labels (..., L) -> (..., 2 * latent_dim)."""
        return self.head(hx + self.y_part(y_feat))

    def forward(self, x: torch.Tensor, y_feat: torch.Tensor) -> torch.Tensor:
        return self.given_x(self.x_part(x), y_feat)


def labelled_logits(decoder: nn.Module, z: torch.Tensor, y_feat: torch.Tensor,
                    shape: tuple[int, int, int]) -> torch.Tensor:
    """p(x|z, y)'s logits for z (..., N, D) and labels (N, L): (..., N, C, H, W).

    The decoder takes concat(z, y). Leading sample dimensions of z (IWAE's k, AIS chains)
    share the labels of their row.
    """
    lead = z.shape[:-1]
    y_feat = y_feat.expand(*lead, y_feat.shape[-1])
    h = torch.cat([z, y_feat], dim=-1).reshape(-1, z.shape[-1] + y_feat.shape[-1])  # (prod(lead), D+L)
    return decoder(h).reshape(*lead, *shape)
