"""The conditional VAE (Sohn, Lee & Yan 2015; Doersch 2016, "Tutorial on VAEs", section 4).

Encoder q(z|x, y) and decoder p(x|z, y) both see the label; the prior over z stays N(0, I)
(Doersch's choice; Sohn et al. also allow a learned p(z|y)). Training maximizes the
conditional ELBO, a lower bound on log p(x|y):

    log p(x|y) >= E_q(z|x,y)[log p(x|z, y)] - KL(q(z|x, y) || N(0, I)).

Because the label carries the class, z is free to hold the style: decoding one z with every
label draws the same handwriting as every digit (the analogies of Kingma et al. 2014, Fig. 1).
That happens only once the decoder relies on y rather than on a z that also encodes the class,
which the KL term teaches slowly; a small z and long training get there sooner, hence the
quick preset's 8-d z and 100 epochs.

Labels are class indices (N,) int64 for MNIST-like data (one-hot inside the model) or binary
attribute vectors (N, A) float for CelebA-shaped data.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.data import DataBundle
from genbench.errors import GenbenchError
from genbench.kit.latent import (
    LabelledEncoder,
    gaussian_kl,
    label_features,
    label_width,
    labelled_logits,
    random_labels,
    reparameterize,
    split_gaussian,
    standard_normal_prior,
)
from genbench.kit.nn import AUTOENCODER_PRESETS, AutoencoderConfig, adam, build_decoder
from genbench.kit.observation import learned_log_std, observation_log_prob, observation_model


@register_model("cvae")
class CVAE(nn.Module):
    """Conditional VAE (Sohn et al. 2015): q(z|x,y), p(x|z,y), N(0, I) prior over z."""

    Config = AutoencoderConfig  # the VAE's, so the two are compared network for network
    conditional = True
    presets = {**AUTOENCODER_PRESETS,
               "quick": {"hidden": (400,), "latent_dim": 8, "epochs": 100}}  # see the docstring

    def __init__(self, config: AutoencoderConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        width = label_width(info)
        self.encoder = LabelledEncoder(info.shape, config.hidden, width, config.latent_dim,
                                       config.activation)
        self.decoder = build_decoder(info.shape, tuple(reversed(config.hidden)),
                                     config.latent_dim + width, config.activation)
        self.log_std = learned_log_std(info)
        # attribute frequencies of the training set, for sample() without labels
        self.register_buffer("attribute_freq", torch.full((info.num_attributes or 0,), 0.5))

    # -- capabilities -----------------------------------------------------------------
    def prior(self) -> Distribution:
        return standard_normal_prior(self.config.latent_dim, like=self.log_std)

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return split_gaussian(self.encoder(x, self._labels(y)))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return observation_model(self.info.observation, self._logits(z, self._labels(y)),
                                 self.log_std)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self._logits(z, self._labels(y)))

    def draw_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Labels to sample with when none are given: uniform classes / attribute rates."""
        return random_labels(self.info, n, generator, self.log_std.device, self.attribute_freq)

    def _labels(self, y: torch.Tensor | None) -> torch.Tensor:
        return label_features(y, self.info, self.log_std.dtype)

    def _logits(self, z: torch.Tensor, y_feat: torch.Tensor) -> torch.Tensor:
        return labelled_logits(self.decoder, z, y_feat, self.info.shape)

    # -- training ---------------------------------------------------------------------
    def on_train_start(self, data: DataBundle) -> None:
        if data.train.y is None:
            raise GenbenchError(f"cvae needs labels; dataset {data.info.name!r} has none")
        if self.info.num_attributes:
            self.attribute_freq.copy_(data.train.y.float().mean(0))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr, fused=False)  # foreach: its recorded numbers

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """(E_q[log p(x|z, y)] with one reparameterized draw, KL(q(z|x,y) || p(z))) per image.

        ``eps`` (N, D) fixes the standard-normal noise (tests); by default it is drawn.
        """
        y_feat = self._labels(y)
        mu, logvar = self.encoder(x, y_feat).chunk(2, dim=-1)
        z = reparameterize(mu, logvar) if eps is None else mu + eps * (0.5 * logvar).exp()
        logits = self._logits(z, y_feat)
        recon = observation_log_prob(self.info.observation, logits, x, self.log_std)
        return recon, gaussian_kl(mu, logvar)

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        if batch.y is None:
            raise GenbenchError("cvae needs labelled batches; this dataset has no labels")
        recon, kl = self.loss_terms(batch.x, batch.y)
        elbo = (recon - kl).mean()
        return {"loss": -elbo, "recon": recon.mean(), "kl": kl.mean()}
