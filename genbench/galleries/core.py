"""The gallery registry and the helpers every gallery shares.

A gallery is a function ``fn(run, out_path, *, generator, **options) -> Path`` that decodes
pictures from a loaded run (:class:`genbench.loading.LoadedRun`) and writes one PNG. It
registers itself with :func:`register_gallery`, naming the model capabilities it needs (the
names of :func:`genbench.contract.capabilities`). Every random draw comes from ``generator``:
the same call gives the same picture.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from genbench.contract import capabilities, generate_from, missing_reason
from genbench.errors import GenbenchError
from genbench.loading import LoadedRun
from genbench.metrics.sampling import encode, labels_for

N_STATS = 1000  # test images encoded for class/attribute means

GalleryFn = Callable[..., Path]


@dataclass(frozen=True)
class Gallery:
    kind: str
    fn: GalleryFn
    needs: frozenset[str]  # capabilities the model must have (contract.capabilities names)
    description: str  # one line for `genbench gallery --kind`, and the default caption
    caption: Callable[[LoadedRun], str] | None = None  # a caption that depends on the run


GALLERIES: dict[str, Gallery] = {}


class NotApplicable(GenbenchError):
    """Raised by a gallery for a model or data it is not meant for (arithmetic on a conditional
    model, a pyramid of a model without levels, the 2-D manifold of a 20-d latent, analogies on
    data without labels): :func:`genbench.galleries.render` reports it like any error,
    :func:`genbench.galleries.render_all` records it in ``not_applicable``, which the report
    does not print. Raise a plain GenbenchError for what a reader should hear about."""


def register_gallery(kind: str, *, needs: frozenset[str], description: str,
                     caption: Callable[[LoadedRun], str] | None = None
                     ) -> Callable[[GalleryFn], GalleryFn]:
    """Decorator: register ``fn(run, out_path, *, generator, **options) -> Path`` as ``kind``."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", kind):
        raise ValueError(f"gallery kind {kind!r}: use lower-case letters, digits, '-' or '_'")
    if not isinstance(needs, frozenset):
        raise TypeError(f"gallery {kind!r}: needs must be a frozenset of capability names")

    def wrap(fn: GalleryFn) -> GalleryFn:
        old = GALLERIES.get(kind)
        if old is not None and old.fn.__qualname__ != fn.__qualname__:
            raise ValueError(f"gallery kind {kind!r} is registered twice")
        GALLERIES[kind] = Gallery(kind, fn, needs, description, caption)
        return fn

    return wrap


def unmet(gallery: Gallery, model: torch.nn.Module) -> str | None:
    """Why ``gallery`` does not apply to ``model`` ("no encoder"), or None when it does."""
    return missing_reason(gallery.needs, capabilities(model))


# -- what the galleries share ---------------------------------------------------------

def has_encoder(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "encode", None))


def display_order(y: torch.Tensor | None, size: int) -> torch.Tensor:
    """Test indices in the order galleries use them: classes interleaved (0, 1, ..., 9, 0, ...).

    Test splits are often sorted by class, so "the first 16 test images" can all be zeros and
    class means from "the first 500" can miss most classes. Without class labels: a fixed
    random permutation.
    """
    if y is None or y.dim() != 1:
        return torch.randperm(size, generator=torch.Generator().manual_seed(0))
    y = y.cpu()
    rank = torch.zeros_like(y)  # position of each image within its class
    for k in y.unique():
        members = (y == k).nonzero().flatten()
        rank[members] = torch.arange(len(members))
    return torch.argsort(rank * (int(y.max()) + 1) + y, stable=True)  # by (rank, class)


def test_images(run: LoadedRun, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` test images (and labels) in :func:`display_order`, as models are scored on them."""
    x, y = run.data.eval_x("test"), run.data.eval_y("test")
    idx = display_order(y, len(x))[:n].to(x.device)
    return x[idx], None if y is None else y[idx]


@torch.no_grad()
def codes(run: LoadedRun, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The encoder's mean code for each image (N, D): the code a reconstruction decodes."""
    return encode(run.model, x, labels_for(run.model, y)).mean


@torch.no_grad()
def decode_mean(run: LoadedRun, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    return generate_from(run.model, z, labels_for(run.model, y)).clamp(0, 1)


def save_png_grid(images: torch.Tensor, path: Path, nrow: int) -> Path:
    """(N, C, H, W) in [0, 1] -> a PNG grid; grey grids are saved with one channel (a third of the bytes)."""
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)
    array = (grid * 255).round().to(torch.uint8)  # (3, H, W); make_grid repeats a grey channel
    grey = bool((array == array[:1]).all())
    img = Image.fromarray(array[0].numpy() if grey else array.permute(1, 2, 0).numpy())
    import io

    from genbench.store import atomic_write_bytes

    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return path
