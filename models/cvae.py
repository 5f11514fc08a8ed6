"""The conditional VAE (Sohn, Lee & Yan 2015; Doersch 2016, "Tutorial on VAEs", section 4).

Encoder q(z|x, y) and decoder p(x|z, y) both see the label; the prior over z stays N(0, I)
(Doersch's choice; Sohn et al. also allow a learned p(z|y)). Training maximizes the
conditional ELBO, a lower bound on log p(x|y):

    log p(x|y) >= E_q(z|x,y)[log p(x|z, y)] - KL(q(z|x, y) || N(0, I)).

Because the label carries the class, z is free to hold the style: decoding one z with every
label draws the same handwriting as every digit (the analogies of Kingma et al. 2014, Fig. 1).
That happens only once the decoder relies on y rather than on a z that also encodes the class,
which the KL term teaches slowly: on mnist-5k after 30 epochs with a 20-d z the label barely
changed the digit; with an 8-d z and 100 epochs (the quick preset, ~35 s on one core) every
row of the analogies grid turns into the ten digits (ELBO -110.4 against -112.2 before, and
a 4-d z gives the cleanest grid at ELBO -122).

Labels are class indices (N,) int64 for MNIST-like data (one-hot inside the model) or binary
attribute vectors (N, A) float for CelebA-shaped data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.data.bundle import DataBundle
from genbench.errors import GenbenchError
from genbench.nn import activation, build_decoder, build_encoder, gaussian_kl, mlp
from genbench.observation import observation_log_prob, observation_model


@dataclass(frozen=True)
class CVAEConfig:
    hidden: tuple[int, ...] = (400,)  # MLP hidden sizes (28x28); 64x64 uses the conv stack
    latent_dim: int = 20
    activation: str = "relu"
    lr: float = 1e-3



def label_width(info: DataInfo) -> int:
    """Width of the label vector the networks see: K classes (one-hot) or A attributes."""
    if info.num_classes:
        return info.num_classes
    if info.num_attributes:
        return info.num_attributes
    raise GenbenchError(f"dataset {info.name!r} has no labels; conditional models need class "
                        "labels or attributes (use mnist, mnist-5k, fashion-mnist or celeba)")


def label_features(y: torch.Tensor, info: DataInfo, dtype: torch.dtype = torch.float32
                   ) -> torch.Tensor:
    """Labels as the float vectors the networks take: (N,) classes -> (N, K) one-hot.

    Float (N, K) rows are taken as given (soft or mixed labels); attributes pass through.
    """
    if info.num_classes and not torch.is_floating_point(y):
        return F.one_hot(y.long(), info.num_classes).to(dtype)
    return y.to(dtype)


def need_labels(y: torch.Tensor | None) -> torch.Tensor:
    """Conditional models' encode/decode/generate take ``y=``; a metric that forgot gets n/a."""
    if y is None:
        raise GenbenchError("this model is conditional: pass y= labels (the model sets "
                            "`conditional = True`)")
    return y


class LabelledEncoder(nn.Module):
    """q(z|x, y) as Gaussian mean and log-variance heads, (N, ...) -> (N, 2 * latent_dim).

    The first layer on concat(x, y) is split into W_x x + W_y y (the same function), so a
    model that needs every label for one x (M2) computes the x part once.
    """

    def __init__(self, shape: tuple[int, int, int], hidden: Sequence[int], label_dim: int,
                 latent_dim: int, act: str) -> None:
        super().__init__()
        width = hidden[0]
        self.x_part = build_encoder(shape, (), width, act)  # (N, width), before activation
        self.y_part = nn.Linear(label_dim, width, bias=False)
        self.head = nn.Sequential(activation(act), mlp([*hidden, 2 * latent_dim], act))

    def forward(self, x: torch.Tensor, y_feat: torch.Tensor) -> torch.Tensor:
        return self.head(self.x_part(x) + self.y_part(y_feat))


def decoder_logits(decoder: nn.Module, z: torch.Tensor, y_feat: torch.Tensor,
                   shape: tuple[int, int, int]) -> torch.Tensor:
    """p(x|z, y)'s logits for z (..., N, D) and labels (N, L): (..., N, C, H, W).

    Leading sample dimensions of z (IWAE's k, AIS chains) share the labels of their row.
    """
    lead = z.shape[:-1]
    y_feat = y_feat.expand(*lead, y_feat.shape[-1])
    h = torch.cat([z, y_feat], dim=-1).reshape(-1, z.shape[-1] + y_feat.shape[-1])  # (prod(lead), D+L)
    return decoder(h).reshape(*lead, *shape)


@register_model("cvae")
class CVAE(nn.Module):
    """Conditional VAE (Sohn et al. 2015): q(z|x,y), p(x|z,y), N(0, I) prior over z."""

    Config = CVAEConfig
    conditional = True
    # The VAE's sizes, so the two are compared network for network.
    presets = {
        "smoke": {"hidden": (64,), "latent_dim": 8},
        "quick": {"hidden": (400,), "latent_dim": 8, "epochs": 100},  # see the module docstring
        "paper": {"hidden": (500,), "latent_dim": 20, "activation": "tanh"},
    }

    def __init__(self, config: CVAEConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        width = label_width(info)
        self.encoder = LabelledEncoder(info.shape, config.hidden, width, config.latent_dim,
                                       config.activation)
        self.decoder = build_decoder(info.shape, tuple(reversed(config.hidden)),
                                     config.latent_dim + width, config.activation)
        self.log_std = nn.Parameter(torch.tensor(-1.0), requires_grad=info.observation == "gaussian")
        self.register_buffer("zero", torch.zeros(config.latent_dim))
        # attribute frequencies of the training set, for sample() without labels
        self.register_buffer("attribute_freq", torch.full((info.num_attributes or 0,), 0.5))

    # -- capabilities -----------------------------------------------------------------
    def prior(self) -> Distribution:
        return Independent(Normal(self.zero, torch.ones_like(self.zero)), 1)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        y_feat = label_features(need_labels(y), self.info, self.zero.dtype)
        mu, logvar = self.encoder(x, y_feat).chunk(2, dim=-1)
        return Independent(Normal(mu, (0.5 * logvar).exp()), 1)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return observation_model(self.info.observation, self._logits(z, y), self.log_std)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self._logits(z, y))

    def sample(self, n: int, generator: torch.Generator | None = None,
               y: torch.Tensor | None = None) -> torch.Tensor:
        """n images; without ``y`` the labels are drawn (uniform classes / attribute rates)."""
        z = torch.randn(n, self.config.latent_dim, generator=generator, device=self.zero.device)
        if y is None:
            y = self.draw_labels(n, generator)
        return self.generate(z, y)

    def draw_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.info.num_classes:
            return torch.randint(self.info.num_classes, (n,), generator=generator,
                                 device=self.zero.device)
        return torch.bernoulli(self.attribute_freq.expand(n, -1), generator=generator)

    def _logits(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        y_feat = label_features(need_labels(y), self.info, self.zero.dtype)
        return decoder_logits(self.decoder, z, y_feat, self.info.shape)

    # -- training ---------------------------------------------------------------------
    def on_train_start(self, data: DataBundle) -> None:
        if data.train.y is None:
            raise GenbenchError(f"cvae needs labels; dataset {data.info.name!r} has none")
        if self.info.num_attributes:
            self.attribute_freq.copy_(data.train.y.float().mean(0))

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"cvae": torch.optim.Adam(self.parameters(), lr=self.config.lr, foreach=True)}

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_q[log p(x|z, y)] with one reparameterized draw, KL(q(z|x,y) || p(z))) per image.

        ``eps`` (N, D) fixes the standard-normal noise (tests); by default it is drawn.
        """
        y_feat = label_features(y, self.info, self.zero.dtype)
        mu, logvar = self.encoder(x, y_feat).chunk(2, dim=-1)
        eps = torch.randn_like(mu) if eps is None else eps
        z = mu + eps * (0.5 * logvar).exp()  # reparameterization trick
        logits = decoder_logits(self.decoder, z, y_feat, self.info.shape)
        recon = observation_log_prob(self.info.observation, logits, x, self.log_std)
        return recon, gaussian_kl(mu, logvar)

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]
                      ) -> dict[str, torch.Tensor]:
        if batch.y is None:
            raise GenbenchError("cvae needs labelled batches; this dataset has no labels")
        recon, kl = self.loss_terms(batch.x, batch.y)
        elbo = (recon - kl).mean()
        opt = optimizers["cvae"]
        opt.zero_grad(set_to_none=True)
        (-elbo).backward()
        opt.step()
        return {"loss": -elbo.detach(), "recon": recon.mean().detach(), "kl": kl.mean().detach()}
