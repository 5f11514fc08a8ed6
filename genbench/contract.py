"""The model contract: capabilities, not inheritance.

A model is an ``nn.Module`` with a ``Config`` dataclass, built as ``Model(config, info)``
with a :class:`DataInfo`. What it can do is what it exposes:

=========== ======================================================================
capability  methods (``torch.distributions`` where a distribution is meant)
=========== ======================================================================
train       ``configure_optimizers() -> dict[str, Optimizer]``;
            ``training_step(batch, optimizers) -> dict[str, Tensor]`` (detached scalars;
            the model zeroes, backprops and steps its own optimizers, so a GAN updates D
            and G by their own losses). Optional hooks: ``on_epoch_end(epoch, stats)``
            (may raise :class:`genbench.errors.Diverged`) and ``on_train_end(train_x)``.
sample      ``sample(n, generator=None) -> Tensor`` (n, C, H, W), the observation mean
prior       ``prior() -> Distribution`` over z, event shape (latent_dim,)
generate    ``generate(z) -> Tensor`` the decoder's mean image in data space, [0, 1]
decode      ``decode(z) -> Distribution`` p(x|z), event shape (C, H, W)
encode      ``encode(x) -> Distribution`` q(z|x), event shape (latent_dim,); a
            :class:`Delta` for a deterministic encoder (AE)
condition   ``conditional = True``: the above take ``y=`` labels
classify    ``classify(x) -> Distribution`` q(y|x) (M2)
=========== ======================================================================

Tensors are created on the model's device (``self.device``), never with ``.cuda()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.distributions import Distribution, constraints

Observation = Literal["bernoulli", "gaussian"]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to shape itself."""

    name: str  # recorded dataset name (e.g. "mnist-5k" after a fallback)
    variant: str  # "dynamic" | "static" | "continuous"
    shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int | None = None  # class labels 0..K-1, or None
    num_attributes: int | None = None  # binary attribute labels (CelebA), or None
    observation: Observation = "bernoulli"  # the observation model the variant calls for
    label_names: tuple[str, ...] = ()
    splits: dict[str, int] = field(default_factory=dict)  # split name -> size

    @property
    def dim(self) -> int:
        c, h, w = self.shape
        return c * h * w


@dataclass
class Batch:
    """One training batch: ``x`` (N, C, H, W) in [0, 1]; ``y`` labels or None.

    ``index`` holds the rows' positions in the training split (so a semi-supervised model
    can tell its labelled examples apart).
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    index: torch.Tensor | None = None


CAPABILITIES = ("train", "sample", "prior", "generate", "decode", "encode", "condition", "classify")


def capabilities(model: object) -> frozenset[str]:
    """The capabilities ``model`` exposes, read off its attributes."""
    have = {c for c in ("sample", "prior", "generate", "decode", "encode", "classify")
            if callable(getattr(model, c, None))}
    if callable(getattr(model, "training_step", None)):
        have.add("train")
    if getattr(model, "conditional", False):
        have.add("condition")
    return frozenset(have)


MISSING_REASON = {
    "encode": "no encoder",
    "decode": "no observation model",
    "generate": "no decoder",
    "prior": "no prior",
    "sample": "cannot sample",
    "classify": "no classifier",
    "condition": "not conditional",
    "density_encoder": "point-mass encoder",
}


def missing_reason(needs: frozenset[str], have: frozenset[str]) -> str | None:
    """'no encoder' etc. for the first unmet capability, or None when all are met.

    Checked in MISSING_REASON's order, so a model without an encoder hears "no encoder"
    before "point-mass encoder" (a property of an encoder it does not have).
    """
    order = list(MISSING_REASON)
    for need in sorted(needs, key=lambda n: (order.index(n) if n in order else len(order), n)):
        if need not in have:
            return MISSING_REASON.get(need, f"no {need}")
    return None


class Delta(Distribution):
    """A point mass at ``loc`` with event shape (D,): the AE's deterministic encoder.

    ``torch.distributions`` has none. ``log_prob`` is 0 at ``loc`` and -inf elsewhere, so
    importance sampling with it is meaningless; likelihood metrics that need a density
    encoder check :func:`has_density_encoder` and report "n/a: point-mass encoder".
    """

    arg_constraints = {"loc": constraints.real}
    has_rsample = True

    def __init__(self, loc: torch.Tensor, validate_args: bool | None = False) -> None:
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        same = (value == self.loc).all(-1)
        return torch.where(same, 0.0, float("-inf")).to(self.loc.dtype)

    def entropy(self) -> torch.Tensor:
        return torch.zeros(self.batch_shape, device=self.loc.device)


def has_density_encoder(model: object) -> bool:
    """True when ``encode`` returns a distribution with a density (not a :class:`Delta`)."""
    return callable(getattr(model, "encode", None)) and not getattr(model, "point_encoder", False)


def model_device(model: torch.nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
