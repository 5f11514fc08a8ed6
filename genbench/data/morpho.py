"""Morpho-MNIST measurements (Castro et al. 2019): stroke thickness, slant, width, height, area.

Measured from the image itself, so a generated or edited digit can be measured the same way
as a real one. Following the paper's ``measure_image``: each image is upsampled ``SCALE`` = 4
times (bicubic here, torch's ``interpolate``; the paper uses skimage's ``pyramid_expand``)
and binarized at half its intensity range; then

- ``thickness``: twice the mean distance-to-background (scipy's Euclidean distance
  transform) along the skeleton, in native pixels: a bar 3 px wide measures ~3. The paper
  takes the skeleton from skimage's ``medial_axis``, 30 times slower than the thinning of
  ``skeletonize`` (Zhang & Suen 1984) used here; both run along the middle of the stroke;
- ``slant``: arctan(-mu11 / mu02) from the central second moments of the upsampled grey
  image, radians; positive leans right (top to the right; rows grow downwards);
- ``width``, ``height``: the extent of the binarized digit in native pixels, width taken
  along the slant (columns shifted by ``shear * (row - centre row)``, the paper's bounding
  parallelogram) so that a slanted 1 stays narrow. The paper trims 1% of the mass on each
  side; we take the full extent, which is exact on hand-drawn shapes (a 6 x 10 rectangle
  measures 6 x 10);
- ``area``: the binarized pixel count, in native pixels.

An empty image (no intensity range) measures 0 throughout. Everything but the medial axis is
batched in torch; the skeleton and distance transform are one call each per image
(~0.7 ms at 112 x 112: 5,000 digits in about 5 s on one core).

Where the measures make sense: handwritten strokes (MNIST, mnist-5k). For Fashion-MNIST items
only the silhouette measures (``area``, ``width``, ``height``) mean something: a shirt has no
stroke thickness or slant, so ``fashion-mnist-morpho`` carries those three alone.

Measurements of a dataset are cached under ``<cache>/morpho/<sha1 of the images and this
code>.pt`` (``$GENBENCH_CACHE``, else ``~/.cache/genbench``), like the evaluator's features.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genbench.data.bundle import DataBundle, DataRequest
from genbench.errors import GenbenchError
from genbench.registry import register_dataset

MEASURES = ("thickness", "slant", "width", "height", "area")
SILHOUETTE = ("width", "height", "area")  # what still means something for non-strokes
SCALE = 4
CHUNK = 256  # images upsampled at once (memory only, never the answer)


def _hires_binary(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) in [0, 1] -> (upsampled grey (N, sH, sW), binary at half range)."""
    up = F.interpolate(x[:, None].double(), scale_factor=SCALE, mode="bicubic",
                       align_corners=False)[:, 0].clamp(0, 1)  # (N, sH, sW)
    lo = up.amin((1, 2), keepdim=True)
    hi = up.amax((1, 2), keepdim=True)
    binary = (up >= lo + 0.5 * (hi - lo)) & (hi - lo > 1e-6)
    return up, binary


def _moments(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(shear mu11/mu02, centre row, mass) of each grey image (N, H, W); rows = y, cols = x."""
    n, h, w = img.shape
    ys = torch.arange(h, dtype=img.dtype)[None, :, None]
    xs = torch.arange(w, dtype=img.dtype)[None, None, :]
    m00 = img.sum((1, 2)).clamp_min(1e-12)
    mx, my = (xs * img).sum((1, 2)) / m00, (ys * img).sum((1, 2)) / m00
    u11 = (xs * ys * img).sum((1, 2)) / m00 - mx * my
    u02 = (ys ** 2 * img).sum((1, 2)) / m00 - my ** 2
    return u11 / u02.clamp_min(1e-12), my, m00


def _extent(binary: torch.Tensor, shear: torch.Tensor, row_mid: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(width along the slant, height) of each binary image, in upsampled pixels."""
    n, h, w = binary.shape
    ys = torch.arange(h, dtype=torch.float64)[None, :, None]
    xs = torch.arange(w, dtype=torch.float64)[None, None, :]
    xd = xs - shear[:, None, None] * (ys - row_mid[:, None, None])  # (N, H, W) deslanted columns
    big = torch.tensor(float("inf"), dtype=torch.float64)
    left = torch.where(binary, xd, big).amin((1, 2))
    right = torch.where(binary, xd, -big).amax((1, 2))
    rows = binary.any(2)  # (N, H)
    top = torch.where(rows, ys[:, :, 0], big).amin(1)
    bottom = torch.where(rows, ys[:, :, 0], -big).amax(1)
    empty = ~binary.flatten(1).any(1)
    width = torch.where(empty, 0.0, right - left + 1)
    height = torch.where(empty, 0.0, bottom - top + 1)
    return width, height


def _thickness(binary: np.ndarray) -> float:
    """2 x mean distance to background along the skeleton of one upsampled binary image.

    The image is padded with background so a stroke touching the border ends there.
    """
    from scipy.ndimage import distance_transform_edt
    from skimage.morphology import skeletonize

    if not binary.any():
        return 0.0
    padded = np.pad(binary, 1)
    skeleton = skeletonize(padded)
    return 2.0 * float(distance_transform_edt(padded)[skeleton].mean()) / SCALE


def measure(images: torch.Tensor) -> torch.Tensor:
    """Morpho-MNIST measures of grey images: (N, 1, H, W) or (N, H, W), uint8 or float in
    [0, 1] -> (N, 5) float32 in ``MEASURES`` order (px, radians, px, px, px^2)."""
    x = images.detach().cpu()
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"Morpho-MNIST measures grey images; got {x.shape[1]} channels")
        x = x[:, 0]
    x = x.double() / 255.0 if x.dtype == torch.uint8 else x.double()
    out = []
    for start in range(0, x.shape[0], CHUNK):
        up, binary = _hires_binary(x[start : start + CHUNK])
        shear, row_mid, _ = _moments(up)
        width, height = _extent(binary, shear, row_mid)
        area = binary.sum((1, 2)).double()
        slant = torch.where(binary.flatten(1).any(1), torch.atan(-shear), 0.0)
        thick = torch.tensor([_thickness(b) for b in binary.numpy()], dtype=torch.float64)
        out.append(torch.stack([thick, slant, width / SCALE, height / SCALE,
                                area / SCALE ** 2], 1))
    if not out:
        return torch.zeros(0, len(MEASURES))
    return torch.cat(out).float()


# -- the cache ------------------------------------------------------------------------
CODE_HASH = hashlib.sha1("".join(inspect.getsource(f) for f in (
    _hires_binary, _moments, _extent, _thickness, measure)).encode()).hexdigest()[:12]


def measure_cached(images: torch.Tensor, cache: Path | None = None) -> torch.Tensor:
    """:func:`measure` of uint8 images, cached by the sha1 of their bytes and of this code."""
    from genbench import store

    x = images.detach().cpu().contiguous()
    h = hashlib.sha1(f"{CODE_HASH}:{tuple(x.shape)}:{x.dtype}".encode())
    h.update(x.numpy().tobytes())
    path = Path(cache or store.cache_root()) / "morpho" / f"{h.hexdigest()[:20]}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # an unreadable cache file is measured again
            pass
    try:
        import skimage  # noqa: F401  (measure's skeleton; an optional extra)
    except ImportError:
        raise GenbenchError("Morpho-MNIST measures need scikit-image: "
                            'pip install "genbench[morpho]"') from None
    values = measure(x)
    store.save_torch(path, values)
    return values


# -- datasets with measured attributes ----------------------------------------------------
SUFFIX = "-morpho"


def measure_names(info_name: str) -> tuple[str, ...]:
    """The measured attributes a dataset carries, read off its recorded name: every measure
    for digits (``mnist-morpho``, ``mnist-5k-morpho``, ``synthetic-morpho``), the silhouette
    ones for Fashion-MNIST, none for a dataset without the suffix."""
    if not info_name.endswith(SUFFIX):
        return ()
    return SILHOUETTE if info_name.startswith("fashion") else MEASURES


def with_measures(bundle: DataBundle, cache: Path | None = None) -> DataBundle:
    """``bundle`` renamed ``<name>-morpho`` with each split's measured attributes attached
    (``Split.measures`` (N, M) float32 in ``bundle.measure_names`` order, raw units)."""
    name = bundle.info.name + SUFFIX
    names = measure_names(name)
    cols = [MEASURES.index(n) for n in names]
    splits = {}
    for split in ("train", "val", "test"):
        part = bundle.split(split)
        if part.x.shape[1] != 1:
            raise GenbenchError(f"Morpho-MNIST measures grey images; {bundle.info.name} has "
                                f"{part.x.shape[1]} channels")
        values = measure_cached(part.x, cache)[:, cols].to(part.x.device)
        splits[split] = dataclasses.replace(part, measures=values)
    info = dataclasses.replace(bundle.info, name=name)
    return dataclasses.replace(bundle, info=info, measure_names=names, _eval_cache={}, **splits)


def _register(base: str, description: str) -> None:
    def load(request: DataRequest) -> DataBundle:
        from genbench.data import load_dataset

        return with_measures(load_dataset(dataclasses.replace(request, name=base)))

    register_dataset(base + SUFFIX, description=description)(load)


_register("mnist", "mnist with Morpho-MNIST measures (thickness, slant, width, height, area) "
          "attached for attribute edits; falls back like mnist (to mnist-5k-morpho)")
_register("mnist-5k", "mnist-5k with Morpho-MNIST measures attached (attribute edits)")
_register("fashion-mnist", "fashion-mnist with the silhouette measures (width, height, area) "
          "attached; stroke thickness and slant mean nothing for clothes")
_register("synthetic", "synthetic with Morpho-MNIST measures attached (tests)")
