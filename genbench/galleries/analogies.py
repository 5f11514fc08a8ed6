"""Analogies: one style, every label (Kingma et al. 2014, Fig. 1; Sohn et al. 2015).

A conditional model's z holds what the label does not: encode a test image x with its own
label y to the posterior mean z = E[q(z|x, y)], then decode that z with every label. Each
row of the grid keeps one z, so one handwriting style is drawn as every digit. The first
column is the input image.

For attribute labels (CelebA) a row shows the input, its reconstruction, and the same z
decoded with one attribute flipped per column.

Pure functions from a model and tensors to an image grid (3, H', W') in [0, 1]; the
``analogies`` gallery at the bottom writes the PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.utils import make_grid

from genbench.contract import generate_from
from genbench.galleries.core import N_STATS, NotApplicable, register_gallery, save_png_grid, test_images
from genbench.loading import LoadedRun

# Attributes shown by default for CelebA-shaped data when present among the label names.
DEFAULT_ATTRIBUTES = ("Smiling", "Male", "Eyeglasses", "Blond_Hair", "Young", "Wearing_Hat")
PAD = 2


def _check_conditional(model: torch.nn.Module) -> None:
    if not getattr(model, "conditional", False):
        raise ValueError("analogies need a conditional model (conditional = True) such as cvae or m2")


@torch.no_grad()
def analogy_images(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor,
                   num_classes: int) -> torch.Tensor:
    """(N, K, C, H, W): image i's code z_i = E[q(z|x_i, y_i)] decoded with labels 0..K-1."""
    _check_conditional(model)
    n = x.shape[0]
    z = model.encode(x, y=labels).mean  # (N, D)
    z_rep = z.repeat_interleave(num_classes, dim=0)  # (N*K, D): z_0 K times, then z_1, ...
    y_rep = torch.arange(num_classes, device=x.device).repeat(n)  # (N*K,): 0..K-1 per row
    return generate_from(model, z_rep, y_rep).reshape(n, num_classes, *x.shape[1:])


def analogies_grid(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor,
                   num_classes: int | None = None) -> torch.Tensor:
    """Grid with one row per input: [x_i | decode(z_i, y=0) | ... | decode(z_i, y=K-1)].

    Attribute labels (N, A) get :func:`attribute_analogies_grid` with the default attributes.
    """
    info = model.info
    if labels.dim() == 2 and not num_classes and getattr(info, "num_attributes", None):
        names = list(info.label_names) or [str(i) for i in range(labels.shape[1])]
        return attribute_analogies_grid(model, x, labels, choose_attributes(names))
    k = num_classes or int(info.num_classes)
    images = analogy_images(model, x, labels, k)
    tiles = torch.cat([x[:, None], images], dim=1)  # (N, K+1, C, H, W)
    return make_grid(tiles.flatten(0, 1).float().clamp(0, 1).cpu(), nrow=k + 1, padding=PAD)


def choose_attributes(label_names: Sequence[str], count: int = len(DEFAULT_ATTRIBUTES)) -> list[int]:
    """Indices of the default attributes present in ``label_names``, else the first ``count``."""
    found = [label_names.index(a) for a in DEFAULT_ATTRIBUTES if a in label_names]
    return found or list(range(min(count, len(label_names))))


@torch.no_grad()
def attribute_analogy_images(model: torch.nn.Module, x: torch.Tensor, attrs: torch.Tensor,
                             attributes: Sequence[int]) -> torch.Tensor:
    """(N, 1 + A', C, H, W): the reconstruction, then z_i decoded with each chosen attribute
    flipped (0 <-> 1), everything else held fixed."""
    _check_conditional(model)
    n, a = x.shape[0], len(attributes)
    attrs = attrs.float()
    z = model.encode(x, y=attrs).mean  # (N, D)
    variants = attrs[:, None, :].repeat(1, 1 + a, 1)  # (N, 1+A', num_attributes)
    for col, attr in enumerate(attributes, start=1):
        variants[:, col, attr] = 1 - variants[:, col, attr]
    z_rep = z.repeat_interleave(1 + a, dim=0)  # (N*(1+A'), D)
    out = generate_from(model, z_rep, variants.flatten(0, 1))
    return out.reshape(n, 1 + a, *x.shape[1:])


def attribute_analogies_grid(model: torch.nn.Module, x: torch.Tensor, attrs: torch.Tensor,
                             attributes: Sequence[int]) -> torch.Tensor:
    """Grid with one row per input: [x_i | reconstruction | flip attribute a_1 | ...]."""
    images = attribute_analogy_images(model, x, attrs, attributes)
    tiles = torch.cat([x[:, None], images], dim=1)  # (N, 2+A', C, H, W)
    return make_grid(tiles.flatten(0, 1).float().clamp(0, 1).cpu(), nrow=tiles.shape[1],
                     padding=PAD)


def first_of_each_class(y: torch.Tensor, num_classes: int, rows: int) -> torch.Tensor:
    """Indices of ``rows`` test images cycling through the classes (different styles)."""
    picks: list[int] = []
    for rnd in range(rows):
        members = (y == rnd % num_classes).nonzero().flatten()
        if len(members) > rnd // num_classes:
            picks.append(int(members[rnd // num_classes]))
    return torch.tensor(picks, dtype=torch.int64, device=y.device)


def dataset_analogies(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                      rows: int = 10) -> torch.Tensor:
    """The gallery for test images ``x`` and labels ``y``: class analogies for (N,) class
    labels (one input of each class per row), attribute flips for (N, A) attributes."""
    if y.dim() == 1:
        k = int(model.info.num_classes)
        pick = first_of_each_class(y, k, rows)
        return analogies_grid(model, x[pick], y[pick], k)
    return analogies_grid(model, x[:rows], y[:rows])


@register_gallery("analogies", needs=frozenset({"condition", "encode", "generate"}),
                  description="Analogies: each row keeps one test image's style z and decodes it "
                              "with every label.")
@torch.no_grad()
def analogies(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 8) -> Path:
    """One test image of each class per row (different styles). No randomness."""
    x, y = test_images(run, N_STATS)
    if y is None:
        raise NotApplicable(f"dataset {run.data.info.name!r} has no labels; analogies need them")
    grid = dataset_analogies(run.model, x, y, rows=n)
    return save_png_grid(grid[None], out_path, 1)  # (1, C, H', W'): make_grid leaves one image as is
