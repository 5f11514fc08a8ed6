"""A dataset on the device, its fixed splits, and its variants.

MNIST-sized data is held as one uint8 tensor (N, C, H, W) per split on the device; a batch
is an index into it, transformed on the device. There is no per-image Python anywhere in
the training loop. Randomness is seeded per (seed, epoch, step), so a run resumed in the
middle of an epoch sees exactly the batches an uninterrupted run would have seen.

Variants (Burda et al. 2015; Wu et al. 2017):

- ``dynamic``: fresh Bernoulli draws of the pixel intensities for every training batch;
  evaluation splits binarized once with a fixed seed.
- ``static``: training set binarized once too (a fixed seed), as in Larochelle's set.
- ``continuous``: pixels dequantized with uniform noise, ``(v + u) / 256`` with
  ``u ~ U[0, 1)``, fresh in training and fixed once for evaluation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from genbench.contract import Batch, DataInfo
from genbench.errors import GenbenchError

VARIANTS = ("dynamic", "static", "continuous")
EVAL_SEED = 1234  # evaluation splits are binarized/dequantized once with this seed
SPLIT_SEED = 0  # validation split and subsets are chosen with this seed, for every run


@dataclass
class Split:
    x: torch.Tensor  # uint8 (N, C, H, W), raw intensities 0..255
    y: torch.Tensor | None = None  # (N,) int64 classes, or (N, A) float {0,1} attributes
    # (N, M) float32 attributes measured from the images (Morpho-MNIST), or None
    measures: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.x.shape[0]

    def take(self, index: torch.Tensor) -> Split:
        return Split(self.x[index], None if self.y is None else self.y[index],
                     None if self.measures is None else self.measures[index.to(self.measures.device)])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), None if self.y is None else self.y.to(device),
                     None if self.measures is None else self.measures.to(device))


@dataclass(frozen=True)
class DataRequest:
    """What the user asked for; sources read what they need of it."""

    name: str
    variant: str | None = None  # None: the source's default
    data_dir: str | None = None
    device: str = "cpu"


@dataclass
class DataBundle:
    info: DataInfo
    train: Split
    val: Split
    test: Split
    notes: list[str] = field(default_factory=list)  # warnings shown to the user and recorded
    source: str = ""  # where the files came from, recorded in config.json
    measure_names: tuple[str, ...] = ()  # the columns of each split's ``measures``
    _eval_cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    @property
    def device(self) -> torch.device:
        return self.train.x.device

    # -- training ---------------------------------------------------------------------
    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.train) // batch_size)

    def train_batches(
        self, batch_size: int, *, seed: int, epoch: int, start_step: int = 0
    ) -> Iterator[Batch]:
        """The epoch's batches from ``start_step`` on, shuffled by (seed, epoch)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(_mix(seed, epoch, -1))
        order = torch.randperm(len(self.train), generator=gen, device=self.device)
        for step in range(start_step, self.steps_per_epoch(batch_size)):
            index = order[step * batch_size : (step + 1) * batch_size]
            gen.manual_seed(_mix(seed, epoch, step))
            part = self.train.take(index)
            x = transform(part.x, self.info.variant, gen, train=True,
                          static_seed=_mix(EVAL_SEED, 0, 0), index=index)
            yield Batch(x=x, y=part.y, index=index)

    # -- evaluation -------------------------------------------------------------------
    def eval_x(self, split: str = "test", n: int | None = None) -> torch.Tensor:
        """The split as models are scored on it: binarized or dequantized once, fixed seed.

        The same tensor for every model and run, so numbers are comparable.
        """
        key = f"{split}:{n}"
        if key not in self._eval_cache:
            part = self.split(split)
            x = part.x[:n] if n is not None else part.x
            gen = torch.Generator(device=self.device)
            gen.manual_seed(_mix(EVAL_SEED, {"train": 0, "val": 1, "test": 2}[split], 0))
            # static: the training split is scored as it was trained on, its one fixed draw
            as_trained = split == "train" and self.info.variant == "static"
            index = torch.arange(len(x), device=self.device) if as_trained else None
            self._eval_cache[key] = transform(x, self.info.variant, gen, train=as_trained,
                                              static_seed=_mix(EVAL_SEED, 0, 0), index=index)
        return self._eval_cache[key]

    def eval_y(self, split: str = "test", n: int | None = None) -> torch.Tensor | None:
        y = self.split(split).y
        return None if y is None else (y[:n] if n is not None else y)

    def split(self, name: str) -> Split:
        if name not in ("train", "val", "test"):
            raise GenbenchError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    # -- reshaping --------------------------------------------------------------------
    def subset_train(self, n: int | None) -> DataBundle:
        """The first ``n`` training images of a fixed permutation (smoke preset)."""
        if n is None or n >= len(self.train):
            return self
        gen = torch.Generator().manual_seed(SPLIT_SEED)
        index = torch.randperm(len(self.train), generator=gen)[:n].to(self.device)
        train = self.train.take(index)
        splits = dict(self.info.splits, train=n)
        return dataclasses.replace(
            self, train=train, info=dataclasses.replace(self.info, splits=splits),
            _eval_cache={},
        )

    def to(self, device: torch.device | str) -> DataBundle:
        return dataclasses.replace(
            self, train=self.train.to(device), val=self.val.to(device),
            test=self.test.to(device), _eval_cache={},
        )


def transform(
    x: torch.Tensor,
    variant: str,
    gen: torch.Generator,
    *,
    train: bool,
    static_seed: int | None = None,
    index: torch.Tensor | None = None,
) -> torch.Tensor:
    """uint8 intensities -> the variant's float tensor in [0, 1], on x's device."""
    v = x.float()
    if variant == "continuous":
        u = torch.rand(v.shape, generator=gen, device=v.device)
        return (v + u) / 256.0
    p = v / 255.0
    if variant == "dynamic" or not train:
        # the same Bernoulli draw as torch.bernoulli, three times cheaper on CPU (whose
        # bernoulli_ kernel cost more per batch than the Adam step)
        return (torch.rand(p.shape, generator=gen, device=p.device) < p).float()
    if variant == "static":
        # A fixed binarization of the whole training set, drawn image by image from a
        # seed derived from the image's index: independent of batching and order.
        assert index is not None and static_seed is not None
        return _static_binarize(p, index, static_seed)
    raise GenbenchError(f"unknown data variant {variant!r}; use one of {', '.join(VARIANTS)}")


def _static_binarize(p: torch.Tensor, index: torch.Tensor, seed: int) -> torch.Tensor:
    # A counter-based hash of (seed, image index, pixel): the same draw for an image
    # whichever batch it lands in, with no per-image Python.
    n = p[0].numel()
    pix = torch.arange(n, device=p.device, dtype=torch.int64)
    h = (index.to(torch.int64)[:, None] * 1_000_003 + pix[None, :] * 7919 + seed) & 0x7FFFFFFF
    h = (h * 1103515245 + 12345) & 0x7FFFFFFF
    h = (h ^ (h >> 13)) * 1664525 & 0x7FFFFFFF
    u = (h.float() + 0.5) / float(0x80000000)
    return (u.view_as(p) < p).float()


def _mix(seed: int, epoch: int, step: int) -> int:
    """A 63-bit seed from (seed, epoch, step) that differs for every combination."""
    h = (seed * 0x9E3779B1 + (epoch + 7) * 0x85EBCA77 + (step + 11) * 0xC2B2AE3D) & (2**63 - 1)
    return h ^ (h >> 29)


def make_bundle(
    *,
    request: DataRequest,
    name: str,
    train: Split,
    test: Split,
    val_size: int,
    default_variant: str,
    num_classes: int | None = None,
    num_attributes: int | None = None,
    label_names: tuple[str, ...] = (),
    notes: list[str] | None = None,
    source: str = "",
    val: Split | None = None,
) -> DataBundle:
    """Fix the validation split (seed 0, the same for every run) and move to the device."""
    variant = request.variant or default_variant
    if variant not in VARIANTS:
        raise GenbenchError(f"unknown data variant {variant!r}; use one of {', '.join(VARIANTS)}")
    if val is None:
        gen = torch.Generator().manual_seed(SPLIT_SEED)
        order = torch.randperm(len(train), generator=gen)
        val, train = train.take(order[:val_size]), train.take(order[val_size:].sort().values)
    c, h, w = train.x.shape[1:]
    info = DataInfo(
        name=name,
        variant=variant,
        shape=(int(c), int(h), int(w)),
        num_classes=num_classes,
        num_attributes=num_attributes,
        observation="gaussian" if variant == "continuous" else "bernoulli",
        label_names=label_names,
        splits={"train": len(train), "val": len(val), "test": len(test)},
    )
    bundle = DataBundle(info, train, val, test, notes=list(notes or []), source=source)
    return bundle.to(request.device)
