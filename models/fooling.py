"""Fooling images (Nguyen et al. 2015, "Deep Neural Networks are Easily Fooled"): the adversary
of the classifier-based metrics.

There is no model of the data. A bank of ``per_class`` images per class starts from noise and
is optimized with Adam, by gradient, to make genbench's OWN evaluator classifier (the very
network the Inception Score and mode coverage read, handed over by the runner through
``on_evaluator``: the same cache entry, trained with the same key) say "class k" with at least
``confidence``. Each image of class k minimizes the hinge ``max(0, log aim - log p(k|x))``, the
aim halfway from ``confidence`` to 1, so an image well past the target stops pulling; the whole
bank stops once every image is at the target (or the step budget, epochs x steps per epoch, is
spent). The paper evolved its images and showed that gradient ascent fools a network too; the
gradient is what this uses, and it reaches >99% in a few hundred steps here.

Two encodings, as in the paper:

- ``direct``: each image is its own pixels, ``sigmoid(logits)``, the logits starting as
  N(0, ``init_std``) noise;
- ``cppn``: the indirect encoding. A compositional pattern-producing network, an MLP of the
  pixel coordinates (x, y, r) and a per-image latent code, its hidden layers cycling sin, tanh
  and gaussian units, renders every image; the network is shared, the codes are per image, and
  both are optimized. Its images are the smooth, regular patterns of the paper's Fig. 2.

"Training" is that optimization: each runner step (the data batch is ignored) is one Adam step
on the whole bank; the history records the mean confidence of the target class and the share
of images at the target. The bank is the model's state (parameters and buffers), so a
checkpoint resumes bit for bit. ``sample(n, generator)`` draws from the bank, classes cycling
from a random offset, members at random, so every sample metric (FID, KID, IS, precision and
recall, density and coverage, mode coverage, memorization) applies, and no likelihood does:
there is no prior, no decoder and no density, and the contract says so ("n/a").

It games only the classifier's decision: IS and classes covered come out at or above the
real-versus-real floor, while FID, precision and density, read from the same network's
features, still see images unlike any digit. The report marks its row (``reference_row``)
and flags the numbers it games (``games``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genbench import register_model
from genbench.contract import Batch, DataInfo
from genbench.errors import GenbenchError, GenbenchWarning
from genbench.kit.nn import adam
from genbench.settings import between, one_of, positive

ACTIVATIONS = ("sin", "tanh", "gaussian")  # the CPPN's hidden units, cycled layer by layer


@dataclass(frozen=True)
class FoolingConfig:
    encoding: str = one_of("direct", ("direct", "cppn"))
    per_class: int = positive(10)  # images optimized per class (the bank: per_class x classes)
    confidence: float = between(0.99, 0.5, 0.9999)  # target p(class | image); the paper: 99.6%
    lr: float = positive(0.1)  # Adam's step size on the pixels' logits or the CPPN
    init_std: float = positive(1.0)  # direct: the starting noise of the logits
    cppn_hidden: tuple[int, ...] = positive((32, 32, 32))  # CPPN hidden widths
    cppn_latent: int = positive(8)  # CPPN: the per-image code's size
    cppn_scale: float = positive(3.0)  # CPPN: coordinates span [-scale, scale] (pattern frequency)


class CPPN(nn.Module):
    """(codes (N, L), coordinates (P, 3)) -> logits (N, P, C): one shared MLP of (x, y, r) and
    the image's code, hidden layers cycling sin, tanh and gaussian units (Stanley 2007)."""

    def __init__(self, latent: int, hidden: tuple[int, ...], channels: int) -> None:
        super().__init__()
        sizes = [3 + latent, *hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=False))
        self.out = nn.Linear(sizes[-1], channels)

    def forward(self, codes: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        n, p = codes.shape[0], coords.shape[0]
        h = torch.cat([coords.expand(n, p, 3), codes[:, None, :].expand(n, p, codes.shape[1])], -1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            kind = ACTIVATIONS[i % len(ACTIVATIONS)]
            h = torch.sin(h) if kind == "sin" else torch.tanh(h) if kind == "tanh" else torch.exp(-h * h)
        return self.out(h)


def coordinates(h: int, w: int, scale: float) -> torch.Tensor:
    """(H*W, 3): each pixel's x, y in [-scale, scale] and its distance r from the centre."""
    ys, xs = torch.meshgrid(torch.linspace(-scale, scale, h), torch.linspace(-scale, scale, w),
                            indexing="ij")
    return torch.stack([xs, ys, (xs * xs + ys * ys).sqrt()], -1).reshape(h * w, 3)


@register_model("fooling")
class Fooling(nn.Module):
    """Fooling images (Nguyen et al. 2015): noise optimized until the evaluator is >99% sure.

    No model of the data: an adversary of the Inception Score and mode coverage."""

    Config = FoolingConfig
    manual_optimization = True  # one Adam step on the bank, skipped once every image is done
    reference_row = "adversarial: games the classifier"  # the report's mark on this row
    games = ("inception_score", "mode_kl", "classes_covered")  # numbers it optimizes for
    presets = {
        # 512 smoke images / 8 = 64 steps; the 1-epoch smoke evaluator cannot be fooled to 99%
        # within [0, 1] images, a 5-epoch one (--set feature_epochs=5) in about 45 direct steps
        "smoke": {"per_class": 2, "batch_size": 8, "cppn_hidden": (16, 16)},
        # 4,000 mnist-5k images / 128 = 32 steps an epoch, 10 epochs: a 320-step budget (the
        # direct encoding is done after about 50, the CPPN after about 160)
        "quick": {"epochs": 10, "batch_size": 128},
    }

    def __init__(self, config: FoolingConfig, info: DataInfo) -> None:
        super().__init__()
        if not info.num_classes:
            raise GenbenchError(f"fooling targets classes and {info.name} has none: run it on a "
                                "dataset with class labels (mnist-5k, fashion-mnist, synthetic)")
        self.config, self.info = config, info
        c, h, w = info.shape
        n = config.per_class * info.num_classes
        self.register_buffer("targets", torch.arange(n) // config.per_class)  # image i: class i // m
        self.register_buffer("reached", torch.zeros(n))  # p(target | image) at the last step
        self.register_buffer("done", torch.zeros((), dtype=torch.bool))  # every image at the target
        if config.encoding == "direct":
            self.logits = nn.Parameter(config.init_std * torch.randn(n, c, h, w))
        else:
            self.codes = nn.Parameter(torch.randn(n, config.cppn_latent))
            self.cppn = CPPN(config.cppn_latent, config.cppn_hidden, c)
            self.register_buffer("coords", coordinates(h, w, config.cppn_scale))
        self._evaluator: list[nn.Module] = []  # a list: the classifier is no part of the state

    # -- the bank -------------------------------------------------------------------------
    def render(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [0, 1] of the bank's rows ``index`` (all by default)."""
        c, h, w = self.info.shape
        if self.config.encoding == "direct":
            logits = self.logits if index is None else self.logits[index]
        else:
            codes = self.codes if index is None else self.codes[index]
            logits = self.cppn(codes, self.coords).transpose(1, 2).reshape(-1, c, h, w)
        return torch.sigmoid(logits)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n images from the bank: classes cycle from a random offset (every class n/K
        times, +-1), each a random member of its class."""
        device, k, m = self.targets.device, self.info.num_classes, self.config.per_class
        offset = torch.randint(k, (1,), generator=generator, device=device)
        classes = (offset + torch.arange(n, device=device)) % k
        member = torch.randint(m, (n,), generator=generator, device=device)
        return self.render(classes * m + member)

    # -- training: optimizing the bank against the evaluator -----------------------------
    def on_evaluator(self, extractor: object) -> None:
        """Keep the evaluator classifier the sample metrics use (frozen, in eval mode)."""
        if getattr(extractor, "task", None) != "classes":
            raise GenbenchError("fooling optimizes against genbench's evaluator classifier: run it "
                                "with feature_extractor=classifier (the default)")
        net = extractor.net.eval()  # type: ignore[attr-defined]
        net.requires_grad_(False)
        self._evaluator[:] = [net]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.parameters(), lr=self.config.lr)

    def on_train_end(self, train_x: torch.Tensor) -> None:
        """Say so when the budget ran out before every image reached the target (the run
        still finishes: its numbers are what such images score)."""
        if not bool(self.done) and self._evaluator:
            short = int((self.reached < self.config.confidence).sum())
            warnings.warn(f"fooling: {short} of {self.reached.numel()} images are below "
                          f"{100 * self.config.confidence:g}% after the step budget; raise --epochs, or "
                          "the evaluator is too unsure to be fooled (smoke: --set feature_epochs=5)",
                          GenbenchWarning, stacklevel=2)

    def aim(self) -> float:
        """The log-confidence the hinge pulls toward: halfway from the target to certainty, so
        that images sharing one CPPN do not hover at the threshold, each step pushing some
        across and others back."""
        return math.log(1 - (1 - self.config.confidence) / 2)

    def training_step(self, batch: Batch, optimizers: dict[str, torch.optim.Optimizer]
                      ) -> dict[str, torch.Tensor]:
        """One Adam step on every image below the target (the data batch is not used)."""
        if not self._evaluator:
            raise GenbenchError("fooling has no evaluator to optimize against: the runner hands it "
                                "over with on_evaluator(extractor) before training")
        if not bool(self.done):
            _, logits = self._evaluator[0](self.render())
            logp = logits.log_softmax(1).gather(1, self.targets[:, None])[:, 0]
            self.reached.copy_(logp.detach().exp())
            if bool((self.reached >= self.config.confidence).all()):
                self.done.fill_(True)  # every image there: stop before stepping it further
            else:
                loss = F.relu(self.aim() - logp).mean()
                (opt,) = optimizers.values()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        p = self.reached
        return {"loss": F.relu(self.aim() - p.clamp_min(1e-30).log()).mean(),
                "confidence": p.mean(), "min_confidence": p.min(),
                "at_target": (p >= self.config.confidence).float().mean()}
