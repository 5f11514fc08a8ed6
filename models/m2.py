"""M2, the semi-supervised VAE of Kingma, Rezende, Mohamed & Welling (2014), section 3.1.2.

Generative model p(y) p(z) p(x|y, z) with a uniform p(y) over K classes and p(z) = N(0, I);
inference networks q(y|x) (the classifier) and q(z|x, y). For a labelled pair the bound is

    log p(x, y) >= L(x, y) = E_q(z|x,y)[log p(x|y, z)] + log p(y) - KL(q(z|x, y) || p(z)),   (eq. 6)

and for an unlabelled x the label is summed out (all K labels, no sampling):

    log p(x) >= U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)).                                     (eq. 7)

(L and U here are the bounds; the paper names their negatives L and U.) The objective to
maximize (eq. 9): J^alpha = sum_labelled L + sum_unlabelled U - alpha E_labelled[-log q(y|x)]
with alpha = 0.1 N. Kingma's code (nips14-ssl, learn_yz_x_ss.py) weighs each labelled
example's log q(y|x) by beta = 0.1 N / N_l and divides the whole sum by N; so per image,

    J^alpha / N = (N_l/N) mean_l L + 0.1 mean_l log q(y|x) + (N_u/N) mean_u U.

Each step takes the runner's batch as unlabelled data (the labelled images in it are dropped,
as the paper keeps the two sets apart) plus a mini-batch of the stored labelled set.

Weighting (``weighting``). With ``paper`` the step maximizes J^alpha / N above; on mnist-5k
(N = 4000, N_l = 100) the labelled bound then has 1/39 the weight of the unlabelled one and
the classifier 0.1. Common re-implementations that work weigh the labelled and the
unlabelled mini-batch equally and put alpha N_u / N_l on the mean classification loss
(Wohlert, semi-supervised-pytorch, examples/notebooks/Deep Generative Model.ipynb):

    balanced = mean_l L + 0.1 (N_u/N_l) mean_l log q(y|x) + mean_u U,

i.e. the paper's objective with the labelled part scaled up by N_u / N_l. The ``quick`` preset
uses ``balanced``; ``paper`` keeps the paper's weighting. ``kl_warmup`` (epochs of a linear
KL weight from 0 to 1, Sønderby et al. 2016) is available but off: it did not help here.

Why the paper's weighting is slow with few labels: when p(x|y, z) ignores y, L(x, y) is
the same for every y and U rewards a uniform q(y|x) through H, so only the alpha term teaches
the classifier and z keeps the class. Weighing the labelled batch up teaches the decoder to
use y sooner. (Measured test errors of both weightings are in the reference report.)

The labelled subset (``labels`` images, balanced across classes) is chosen in
``on_train_start`` with the fixed ``label_seed`` and kept as buffers, so it is checkpointed.
M1+M2 (M2 on a trained VAE's codes) is not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Categorical, Distribution

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.data import DataBundle, transform
from genbench.errors import GenbenchError
from genbench.kit.latent import (
    LabelledEncoder,
    gaussian_kl,
    label_features,
    labelled_logits,
    random_labels,
    reparameterize,
    split_gaussian,
    standard_normal_prior,
)
from genbench.kit.nn import ACTIVATIONS, adam, build_decoder, build_encoder
from genbench.kit.observation import learned_log_std, observation_log_prob, observation_model
from genbench.settings import finite, nonnegative, one_of, positive

WEIGHTINGS = ("paper", "balanced")


@dataclass(frozen=True)
class M2Config:
    hidden: tuple[int, ...] = positive((500,))  # q(z|x,y) and p(x|y,z) MLPs (the paper: one layer of 500)
    classifier_hidden: tuple[int, ...] = positive((500,))  # q(y|x)
    latent_dim: int = positive(50)
    activation: str = one_of("softplus", ACTIVATIONS)
    lr: float = positive(3e-4)  # the paper's Adam step size
    labels: int = positive(100)  # labelled training images, balanced across classes
    label_seed: int = finite(0)  # fixes which images are labelled (the same for every run seed)
    alpha: float = nonnegative(0.1)  # classification weight: alpha * N on E_labelled[-log q(y|x)] (eq. 9)
    labelled_batch: int = positive(100)  # labelled images per step (all of them when fewer)
    # "paper": J^alpha / N; "balanced": labelled and unlabelled batch equal
    weighting: str = one_of("paper", WEIGHTINGS)
    kl_warmup: int = nonnegative(0)  # epochs over which the KL weight rises linearly from 0 to 1 (0: none)


def balanced_subset(y: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``n`` examples, ``n / num_classes`` of each class, fixed by ``seed``.

    One permutation of all indices (CPU generator, so every device picks the same) and the
    first ``n / K`` of each class in that order.
    """
    if n <= 0 or n % num_classes:
        raise GenbenchError(f"labels={n} must be a positive multiple of the {num_classes} "
                            f"classes (e.g. --set labels={10 * num_classes})")
    per_class = n // num_classes
    y = y.cpu()
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    chosen = []
    for c in range(num_classes):
        members = order[y[order] == c]
        if len(members) < per_class:
            raise GenbenchError(f"class {c} has {len(members)} training images, fewer than the "
                                f"{per_class} labels per class asked for; lower --set labels")
        chosen.append(members[:per_class])
    return torch.cat(chosen).sort().values


@register_model("m2")
class M2(nn.Module):
    """Semi-supervised VAE M2 (Kingma et al. 2014): q(y|x), q(z|x,y), p(x|y,z)."""

    Config = M2Config
    conditional = True
    presets = {
        "smoke": {"hidden": (64,), "classifier_hidden": (64,), "latent_dim": 8, "lr": 1e-3},
        "quick": {"hidden": (500,), "classifier_hidden": (500,), "latent_dim": 50, "lr": 1e-3,
                  "epochs": 200, "weighting": "balanced"},
        "paper": {"hidden": (500,), "classifier_hidden": (500,), "latent_dim": 50},
    }

    def __init__(self, config: M2Config, info: DataInfo) -> None:
        super().__init__()
        if config.weighting not in WEIGHTINGS:
            raise GenbenchError(f"unknown weighting {config.weighting!r}; use --set weighting="
                                f"{' or '.join(WEIGHTINGS)}")
        if not info.num_classes:
            raise GenbenchError(f"m2 needs class labels; dataset {info.name!r} has none "
                                "(use mnist, mnist-5k or fashion-mnist)")
        self.config, self.info = config, info
        k, act = info.num_classes, config.activation
        self.classifier = build_encoder(info.shape, config.classifier_hidden, k, act)
        self.encoder = LabelledEncoder(info.shape, config.hidden, k, config.latent_dim, act)
        self.decoder = build_decoder(info.shape, tuple(reversed(config.hidden)),
                                     config.latent_dim + k, act)
        self.log_std = learned_log_std(info)
        # the labelled subset, filled by on_train_start and saved with the weights
        self.register_buffer("labelled_index", torch.zeros(config.labels, dtype=torch.int64))
        self.register_buffer("labelled_x", torch.zeros(config.labels, *info.shape, dtype=torch.uint8))
        self.register_buffer("labelled_y", torch.zeros(config.labels, dtype=torch.int64))
        self.register_buffer("train_size", torch.zeros((), dtype=torch.int64))
        # KL weight of the warm-up (1: the bound), a buffer so a resumed run continues it
        self.register_buffer("kl_weight", torch.tensor(self.warmup_weight(0)))

    # -- capabilities -----------------------------------------------------------------
    def prior(self) -> Distribution:
        return standard_normal_prior(self.config.latent_dim, like=self.log_std)

    def classify(self, x: torch.Tensor) -> Distribution:
        return Categorical(logits=self.classifier(x))

    def encode(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return split_gaussian(self.encoder(x, self._labels(y)))

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> Distribution:
        return observation_model(self.info.observation, self._logits(z, self._labels(y)),
                                 self.log_std)

    def draw_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """y ~ p(y), uniform over the classes (genbench samples z ~ p(z), then x ~ p(x|y,z))."""
        return random_labels(self.info, n, generator, self.log_std.device)

    # -- networks ---------------------------------------------------------------------
    def _labels(self, y: torch.Tensor | None) -> torch.Tensor:
        return label_features(y, self.info, self.log_std.dtype)

    def _q_z(self, x: torch.Tensor, y_feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder(x, y_feat).chunk(2, dim=-1)

    def _logits(self, z: torch.Tensor, y_feat: torch.Tensor) -> torch.Tensor:
        """p(x|y,z) logits for z (..., N, D), labels (N, K): (..., N, C, H, W)."""
        return labelled_logits(self.decoder, z, y_feat, self.info.shape)

    # -- the bounds -------------------------------------------------------------------
    def labelled_bound(self, x: torch.Tensor, y: torch.Tensor, kl_weight: float | torch.Tensor = 1.0
                       ) -> torch.Tensor:
        """L(x, y) of eq. 6 per image (N,), one reparameterized draw; includes log p(y).

        ``kl_weight`` < 1 only during the KL warm-up (then it is not a bound)."""
        y_feat = self._labels(y)
        mu, logvar = self._q_z(x, y_feat)
        z = reparameterize(mu, logvar)
        recon = observation_log_prob(self.info.observation, self._logits(z, y_feat), x, self.log_std)
        return recon - kl_weight * gaussian_kl(mu, logvar) - math.log(self.info.num_classes)

    def unlabelled_bound(self, x: torch.Tensor, kl_weight: float | torch.Tensor = 1.0) -> torch.Tensor:
        """U(x) of eq. 7 per image (N,): L(x, y) for all K labels, weighted by q(y|x), + H."""
        n, k = x.shape[0], int(self.info.num_classes)
        eye = label_features(torch.arange(k, device=x.device), self.info, x.dtype)  # every label, (K, K)
        hx = self.encoder.x_part(x)[:, None, :]  # (N, 1, width), shared by the K labels
        mu, logvar = self.encoder.given_x(hx, eye).chunk(2, dim=-1)  # (N, K, D)
        z = reparameterize(mu, logvar)
        logits = self._logits(z, eye).reshape(n * k, *self.info.shape)  # row i*K + y
        x_rep = x[:, None].expand(n, k, *x.shape[1:]).reshape(n * k, *x.shape[1:])
        recon = observation_log_prob(self.info.observation, logits, x_rep, self.log_std).view(n, k)
        bound = recon - kl_weight * gaussian_kl(mu, logvar) - math.log(k)  # L(x, y): (N, K)
        log_q = torch.log_softmax(self.classifier(x), dim=-1)
        return (log_q.exp() * (bound - log_q)).sum(-1)

    # -- training ---------------------------------------------------------------------
    def on_train_start(self, data: DataBundle) -> None:
        """Choose the balanced labelled subset (fixed by ``label_seed``) and store it."""
        if data.train.y is None:
            raise GenbenchError(f"m2 needs class labels; dataset {data.info.name!r} has none")
        index = balanced_subset(data.train.y, self.config.labels, int(self.info.num_classes),
                                self.config.label_seed).to(data.device)
        self.labelled_index.copy_(index)
        self.labelled_x.copy_(data.train.x[index])
        self.labelled_y.copy_(data.train.y[index])
        self.train_size.fill_(len(data.train))

    def labelled_counts(self) -> torch.Tensor:
        """Labelled images per class (K,): the record that the subset is balanced."""
        return torch.bincount(self.labelled_y, minlength=int(self.info.num_classes))

    def labelled_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A mini-batch of the labelled set, binarized/dequantized like the training data."""
        n_l, dev = self.config.labels, self.labelled_y.device
        pick = (torch.randperm(n_l, device=dev)[: self.config.labelled_batch]
                if n_l > self.config.labelled_batch else torch.arange(n_l, device=dev))
        gen = torch.Generator(device=dev)
        if self.info.variant == "static":  # one fixed binarization of the labelled images
            gen.manual_seed(self.config.label_seed)
            x = transform(self.labelled_x, "static", gen, train=False)[pick]
        else:  # fresh noise each step, from the run's seeded stream
            gen.manual_seed(int(torch.randint(2**62, (1,))))
            x = transform(self.labelled_x[pick], self.info.variant, gen, train=True)
        return x, self.labelled_y[pick]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr, fused=False)  # foreach: its recorded numbers

    def objective(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The step's objective to maximize (see ``objective_weights``) and its parts."""
        if int(self.train_size) == 0:
            raise GenbenchError("m2 has no labelled subset: the runner must call on_train_start(data)")
        x_u = batch.x
        if batch.index is not None:  # the labelled images are not also unlabelled
            x_u = x_u[~torch.isin(batch.index, self.labelled_index)]
        x_l, y_l = self.labelled_batch()
        beta = self.kl_weight  # a tensor: no host sync per step on a GPU
        bound_l = self.labelled_bound(x_l, y_l, beta).mean()
        log_q = self.classify(x_l).log_prob(y_l).mean()
        bound_u = self.unlabelled_bound(x_u, beta).mean() if len(x_u) else bound_l.new_zeros(())
        w_l, w_q, w_u = self.objective_weights()
        total = w_l * bound_l + w_q * log_q + w_u * bound_u
        return {"objective": total, "labelled_bound": bound_l, "unlabelled_bound": bound_u,
                "class_nll": -log_q}

    def objective_weights(self) -> tuple[float, float, float]:
        """Weights on (mean_l L, mean_l log q(y|x), mean_u U) in the step's objective.

        paper:    J^alpha / N = (N_l/N) mean_l L + alpha mean_l log q + (N_u/N) mean_u U
        balanced: mean_l L + alpha (N_u/N_l) mean_l log q + mean_u U
        """
        n, n_l = float(self.train_size), float(self.config.labels)
        if self.config.weighting == "paper":
            return n_l / n, self.config.alpha, (n - n_l) / n
        return 1.0, self.config.alpha * (n - n_l) / n_l, 1.0

    def warmup_weight(self, epochs_done: int) -> float:
        """The KL weight while ``epochs_done`` epochs are finished: rises linearly to 1 over
        ``kl_warmup`` epochs (1/(w+1), 2/(w+1), ...), 1 without a warm-up."""
        w = self.config.kl_warmup
        return min(1.0, (epochs_done + 1) / (w + 1)) if w > 0 else 1.0

    def on_epoch_end(self, epoch: int, means: dict[str, float]) -> None:
        """KL warm-up: the weight for the next epoch (``epoch`` counts from 0)."""
        self.kl_weight.fill_(self.warmup_weight(epoch + 1))

    def training_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        parts = self.objective(batch)
        stats = {k: v for k, v in parts.items() if k != "objective"}
        return {"loss": -parts["objective"], **stats}
