"""JMVAE (Suzuki, Nakayama & Matsuo 2016): a joint multimodal VAE of an image x and its
attributes y, trained with the JMVAE-kl objective.

One latent z explains both modalities: p(x|z) (Bernoulli, or the Gaussian of continuous data)
and p(y|z). y is the concatenation of whatever the dataset carries: class one-hot
(categorical), CelebA's binary attributes (Bernoulli) and the Morpho-MNIST measures of
``*-morpho`` datasets (Gaussian with a learned standard deviation each, on measures
standardized by the training mean and sd). Three encoders: the joint q(z|x, y) and the
unimodal q(z|x), q(z|y). JMVAE-kl maximizes (Suzuki et al. 2016, Sec. 3.3)

    E_q(z|x,y)[log p(x|z) + log p(y|z)] - KL(q(z|x,y) || p(z))
        - alpha [KL(q(z|x,y) || q(z|x)) + KL(q(z|x,y) || q(z|y))],

the joint ELBO plus terms that pull each unimodal encoder onto the joint one, so that a
missing modality can be inferred. ``alpha`` = 1 here (the paper tunes it): the x-only encoder
is what the likelihood metrics use, so it should fit the joint posterior well.

Capabilities: ``encode(x)`` is the x-only q(z|x), so ELBO/IWAE/AIS measure log p(x) with y
marginalized, as for any VAE; ``decode``/``generate``/``prior`` as a VAE's. The contract's
``joint`` hooks ``encode_joint``, ``encode_labels`` and ``label_log_prob`` give the conditional
log p(x|y) (``test_iwae_given_y``, :mod:`genbench.metrics.conditional`), y being the dataset's
labels as a CVAE's (the measures of ``*-morpho`` data marginalized). ``edit(x,
attribute, delta)`` is the paper's attribute edit (its Fig. 6, "Smiling = 3"): encode with
q(z|x, y), move one attribute of y by ``delta`` (standard deviations for a measure, the
raw value for a binary attribute), encode again with the joint encoder and decode. A zero
edit is the reconstruction through q(z|x, y).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, Independent, Normal, kl_divergence

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.data import morpho
from genbench.data.bundle import DataBundle
from genbench.errors import GenbenchError
from genbench.kit.latent import (
    LabelledEncoder,
    gaussian_kl,
    label_features,
    reparameterize,
    split_gaussian,
    standard_normal_prior,
)
from genbench.kit.nn import ACTIVATIONS, adam, build_decoder, build_encoder, mlp
from genbench.kit.observation import learned_log_std, observation_log_prob, observation_model
from genbench.settings import nonnegative, one_of, positive


@dataclass(frozen=True)
class JMVAEConfig:
    hidden: tuple[int, ...] = positive((400,))  # MLP hidden sizes (28x28); 64x64 uses the conv stack
    latent_dim: int = positive(20)
    activation: str = one_of("relu", ACTIVATIONS)
    alpha: float = nonnegative(1.0)  # weight of the two KL(joint || unimodal) terms of JMVAE-kl
    lr: float = positive(1e-3)


@register_model("jmvae")
class JMVAE(nn.Module):
    """Joint multimodal VAE (Suzuki et al. 2016): q(z|x,y), q(z|x), q(z|y); p(x|z), p(y|z)."""

    Config = JMVAEConfig
    presets = {
        "smoke": {"hidden": (64,), "latent_dim": 8},
        "quick": {"hidden": (400,), "latent_dim": 20, "epochs": 30},
        "paper": {"hidden": (512, 512), "latent_dim": 64},
    }

    def __init__(self, config: JMVAEConfig, info: DataInfo) -> None:
        super().__init__()
        self.config, self.info = config, info
        self.classes = info.num_classes or 0
        self.binary = 0 if info.num_classes else (info.num_attributes or 0)
        self.measures = morpho.measure_names(info.name)
        width = self.classes + self.binary + len(self.measures)
        if width == 0:
            raise GenbenchError(f"jmvae models images with labels or attributes; dataset "
                                f"{info.name!r} has none (use mnist-5k-morpho, mnist or celeba)")
        d, act, hidden = config.latent_dim, config.activation, config.hidden
        self.joint = LabelledEncoder(info.shape, hidden, width, d, act)  # q(z|x, y)
        self.x_encoder = build_encoder(info.shape, hidden, 2 * d, act)  # q(z|x)
        self.y_encoder = mlp([width, *hidden, 2 * d], act)  # q(z|y)
        self.x_decoder = build_decoder(info.shape, tuple(reversed(hidden)), d, act)  # p(x|z)
        self.y_decoder = mlp([d, *reversed(hidden), width], act)  # p(y|z) parameters
        self.log_std = learned_log_std(info)
        self.y_log_std = nn.Parameter(torch.zeros(len(self.measures)))  # p(measure | z)
        # standardization of the measures (training mean and sd), saved with the model
        self.register_buffer("measure_mean", torch.zeros(len(self.measures)))
        self.register_buffer("measure_std", torch.ones(len(self.measures)))
        self.train_measures: torch.Tensor | None = None  # looked up by batch.index

    # -- the attribute vector ---------------------------------------------------------
    @property
    def attribute_names(self) -> tuple[str, ...]:
        """What ``edit`` can move: the measures, then the binary attributes."""
        binary = self.info.label_names[: self.binary] if self.binary else ()
        return (*self.measures, *binary)

    def column(self, attribute: str) -> int:
        """Where ``attribute`` sits in the feature vector [classes | binary | measures]."""
        if attribute in self.measures:
            return self.classes + self.binary + self.measures.index(attribute)
        return self.classes + self.info.label_names.index(attribute)

    def features(self, y: torch.Tensor | None, measures: torch.Tensor | None) -> torch.Tensor:
        """y as the networks see it: [one-hot class | binary attributes | standardized measures]."""
        parts = []
        if self.classes or self.binary:
            if y is None:
                raise GenbenchError("jmvae needs the labels y of these images")
            parts.append(label_features(y, self.info, self.log_std.dtype))
        if self.measures:
            if measures is None:
                raise GenbenchError("jmvae needs the measured attributes of these images")
            parts.append((measures.float() - self.measure_mean) / self.measure_std)
        return torch.cat(parts, 1).to(self.log_std.dtype)

    def label_features(self, y: torch.Tensor) -> torch.Tensor:
        """The labels' part of the feature vector, [one-hot class | binary attributes], (N, k + b)."""
        if not (self.classes or self.binary):
            raise GenbenchError(f"jmvae on {self.info.name!r} models no labels beside the measures")
        return label_features(y, self.info, self.log_std.dtype)

    def _labels_log_prob(self, params: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """Categorical + Bernoulli log-probabilities: params, feat (..., >= k + b) -> (...)."""
        k, b = self.classes, self.binary
        out = params.new_zeros(params.shape[:-1])
        if k:
            out = out + (F.log_softmax(params[..., :k], -1) * feat[..., :k]).sum(-1)
        if b:
            out = out - F.binary_cross_entropy_with_logits(
                params[..., k:k + b], feat[..., k:k + b], reduction="none").sum(-1)
        return out

    def y_log_prob(self, params: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """log p(y|z) per row: categorical + Bernoulli + Gaussian parts, (N, L) each -> (N,)."""
        k, b = self.classes, self.binary
        out = self._labels_log_prob(params, feat)
        if self.measures:
            gauss = Normal(params[:, k + b:], self.y_log_std.exp())
            out = out + gauss.log_prob(feat[:, k + b:]).sum(1)
        return out

    # -- capabilities -----------------------------------------------------------------
    def prior(self) -> Distribution:
        return standard_normal_prior(self.config.latent_dim, like=self.log_std)

    def encode(self, x: torch.Tensor) -> Distribution:
        """q(z|x), the x-only encoder: likelihoods are log p(x), y marginalized."""
        return split_gaussian(self.x_encoder(x))

    def encode_joint(self, x: torch.Tensor, y: torch.Tensor | None = None,
                     measures: torch.Tensor | None = None) -> Distribution:
        return split_gaussian(self.joint(x, self.features(y, measures)))

    def encode_labels(self, y: torch.Tensor) -> Distribution:
        """q(z|y) for the labels alone, the proposal of log p(y) in ``iwae_given_y``.

        On ``*-morpho`` data the label encoder also reads the measures, so there is no
        q(z|class) to use; the prior stands in (for 10 classes a good proposal: p(y|z) <= 1,
        so the weights' relative variance is at most (1/p(y) - 1)/k).
        """
        feat = self.label_features(y)
        if self.measures:
            zeros = feat.new_zeros(feat.shape[0], self.config.latent_dim)
            return Independent(Normal(zeros, torch.ones_like(zeros)), 1)
        return split_gaussian(self.y_encoder(feat))

    def label_log_prob(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log p(y|z), (S, N), for codes z (S, N, D) and labels y (N,) or (N, A); the measures
        of ``*-morpho`` data are marginalized (their Gaussian factor integrates to 1)."""
        feat = self.label_features(y)  # (N, k + b)
        params = self.y_decoder(z)[..., : feat.shape[-1]]  # (S, N, k + b)
        return self._labels_log_prob(params, feat.expand_as(params))

    def decode(self, z: torch.Tensor) -> Distribution:
        return observation_model(self.info.observation, self.x_decoder(z), self.log_std)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.x_decoder(z))

    @torch.no_grad()
    def edit(self, x: torch.Tensor, attribute: str, delta: float, y: torch.Tensor | None = None,
             measures: torch.Tensor | None = None) -> torch.Tensor:
        """Decoded images after moving ``attribute`` of y by ``delta``, the JMVAE way.

        Labels y missing: inferred through q(z|x) and p(y|z). Measures missing: measured on
        x itself (:func:`genbench.data.morpho.measure`).
        """
        if attribute not in self.attribute_names:
            raise GenbenchError(f"jmvae cannot edit {attribute!r}; it models "
                                f"{', '.join(self.attribute_names) or 'no editable attribute'}")
        if (self.classes or self.binary) and y is None:
            y = self.infer_labels(x)
        if self.measures and measures is None:
            measures = morpho.measure(x)[:, [morpho.MEASURES.index(m) for m in self.measures]]
        feat = self.features(y, None if measures is None else measures.to(x.device))
        feat[:, self.column(attribute)] += delta
        return self.generate(split_gaussian(self.joint(x, feat)).mean)

    def infer_labels(self, x: torch.Tensor) -> torch.Tensor:
        """Most probable labels under p(y|z) at the mean of q(z|x)."""
        params = self.y_decoder(self.encode(x).mean)
        if self.classes:
            return params[:, : self.classes].argmax(1)
        return (params[:, : self.binary] > 0).float()

    # -- training ---------------------------------------------------------------------
    def on_train_start(self, data: DataBundle) -> None:
        if (self.classes or self.binary) and data.train.y is None:
            raise GenbenchError(f"jmvae needs labels; dataset {data.info.name!r} has none")
        if self.measures:
            m = data.train.measures
            if m is None or tuple(data.measure_names) != tuple(self.measures):
                raise GenbenchError(f"dataset {data.info.name!r} lacks the measures "
                                    f"{', '.join(self.measures)}")
            self.measure_mean.copy_(m.mean(0))
            self.measure_std.copy_(m.std(0).clamp_min(1e-6))
            self.train_measures = m.to(self.log_std.device)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr)

    def loss_terms(self, x: torch.Tensor, feat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image terms of JMVAE-kl with one reparameterized draw from q(z|x, y)."""
        mu, logvar = self.joint(x, feat).chunk(2, dim=-1)
        z = reparameterize(mu, logvar)
        joint = Independent(Normal(mu, (0.5 * logvar).exp()), 1)
        return {
            "recon_x": observation_log_prob(self.info.observation, self.x_decoder(z), x,
                                            self.log_std),
            "recon_y": self.y_log_prob(self.y_decoder(z), feat),
            "kl": gaussian_kl(mu, logvar),
            "kl_x": kl_divergence(joint, self.encode(x)),
            "kl_y": kl_divergence(joint, split_gaussian(self.y_encoder(feat))),
        }

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        measures = None
        if self.measures:
            if self.train_measures is None or batch.index is None:
                raise GenbenchError("jmvae on measured data needs on_train_start and batch indices")
            measures = self.train_measures[batch.index]
        t = {k: v.mean() for k, v in self.loss_terms(batch.x, self.features(batch.y, measures)).items()}
        elbo = t["recon_x"] + t["recon_y"] - t["kl"]
        loss = -(elbo - self.config.alpha * (t["kl_x"] + t["kl_y"]))
        return {"loss": loss, **t}
