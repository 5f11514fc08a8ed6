"""Samples from a model genbench did not train: read, checked and put in a dataset's shape.

``genbench score`` takes an ``.npz``/``.npy`` array, a ``.pt`` tensor, a folder of PNG/JPEG
files, or (from Python) a tensor or array. Everything is checked before anything is
written, and every problem is one :class:`GenbenchError` line saying what to do:

- values: uint8 0..255 (or another integer type within 0..255), or float in [0, 1]; no NaN;
- layout: (N, H, W) for one-channel data, (N, H, W, C) or (N, C, H, W), recognised by the
  dataset's channel count; another channel count is refused;
- size: the dataset's H x W; another size is refused unless ``resize`` names a mode
  (``nearest``, ``bilinear``, ``bicubic`` or ``area``; bilinear and bicubic antialiased),
  and then how is recorded beside the numbers;
- a folder: at least one PNG/JPEG, all of one size and colour mode.

uint8 samples are read as genbench reads the dataset's own images (``mean_images``: the
variant's mean form), so the test images themselves land exactly on the reference; float
samples are taken as they are, as a model's ``sample`` returns them. Conversion happens a
block at a time (:meth:`OutsideSamples.block`), so memory does not grow with N beyond the
samples as given.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from genbench.errors import GenbenchError
from genbench.metrics.features import mean_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npz", ".npy", ".pt")
RESIZE_MODES = ("nearest", "bilinear", "bicubic", "area")
NPZ_KEYS = ("samples", "images", "x", "arr_0")  # which array of an .npz with several
FLOAT_SLACK = 1e-5  # float samples this far outside [0, 1] are clamped, further refused


@dataclass
class OutsideSamples:
    """Samples as given, laid out (N, C, H, W), with where they came from."""

    images: torch.Tensor  # (N, C, H, W): uint8, or float32 in [0, 1]
    source: str  # the path, or "tensor"
    sha256: str  # of the file (or the folder's files, by name), or of the tensor's bytes
    layout: str  # how they were given: NHW, NHWC or NCHW (a folder: the images' mode)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def dtype(self) -> str:
        return "uint8" if self.images.dtype == torch.uint8 else "float"


def read_samples(samples: Any) -> OutsideSamples:
    """``samples`` (a path, a tensor or a numpy array) as (N, C?, H, W, C?) values, checked
    for type and finiteness; the layout is fixed later, against the dataset's shape."""
    if isinstance(samples, (str, Path)):
        path = Path(samples)
        if path.is_dir():
            return _read_folder(path)
        if not path.is_file():
            raise GenbenchError(f"no samples at {path}: pass an .npz, .npy or .pt file or a "
                                "folder of PNG/JPEG images")
        if path.suffix.lower() not in ARRAY_SUFFIXES:
            raise GenbenchError(f"{path}: unknown sample file type {path.suffix!r}; pass an "
                                ".npz, .npy or .pt file or a folder of PNG/JPEG images")
        values = _read_file(path)
        return OutsideSamples(_as_tensor(values, str(path)), str(path), file_sha256([path]), "")
    tensor = _as_tensor(samples, "the samples")
    return OutsideSamples(tensor, "tensor", tensor_sha256(tensor), "")


def file_sha256(paths: list[Path], names: bool = False) -> str:
    h = hashlib.sha256()
    for p in paths:
        if names:
            h.update(p.name.encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def tensor_sha256(t: torch.Tensor) -> str:
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _read_file(path: Path) -> Any:
    import numpy as np

    try:
        if path.suffix.lower() == ".pt":
            value = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(value, dict):
                value = _pick(value, path)
            return value
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                return _pick({k: loaded[k] for k in loaded.files}, path)
        return loaded
    except GenbenchError:
        raise
    except Exception as err:  # noqa: BLE001  (corrupt, pickled, truncated: one line)
        why = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise GenbenchError(f"{path} is unreadable as samples ({why}); save them with "
                            "numpy.save/savez or torch.save of one tensor") from None


def _pick(arrays: dict[str, Any], path: Path) -> Any:
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    for key in NPZ_KEYS:
        if key in arrays:
            return arrays[key]
    raise GenbenchError(f"{path} holds {len(arrays)} arrays ({', '.join(sorted(arrays)[:6])}); "
                        f"save the samples alone, or under one of the names {', '.join(NPZ_KEYS)}")


def _as_tensor(values: Any, what: str) -> torch.Tensor:
    """uint8, or float32 in [0, 1]: anything else is refused with what to do."""
    import numpy as np

    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "buif":
            raise GenbenchError(f"{what} are {values.dtype}; give uint8 0..255 or float in [0, 1]")
        values = torch.from_numpy(np.ascontiguousarray(values))
    if not isinstance(values, torch.Tensor):
        raise GenbenchError(f"{what} are a {type(values).__name__}, not an array; give a tensor "
                            "or array of images")
    t = values.detach().cpu()
    if t.dtype == torch.bool or t.is_complex():
        raise GenbenchError(f"{what} are {t.dtype}; give uint8 0..255 or float in [0, 1]")
    if t.dim() not in (3, 4):
        raise GenbenchError(f"{what} have shape {tuple(t.shape)}; give (N, H, W), (N, H, W, C) "
                            "or (N, C, H, W)")
    if t.shape[0] == 0:
        raise GenbenchError(f"{what} hold no images (shape {tuple(t.shape)})")
    if t.dtype == torch.uint8:
        return t
    if not t.is_floating_point():  # other integers: fine when they are 8-bit values
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi > 255:
            raise GenbenchError(f"{what} are {t.dtype} with values {lo}..{hi}; give uint8 0..255 "
                                "or float in [0, 1]")
        return t.to(torch.uint8)
    t = t.float()
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = int((~finite).flatten(1).any(1).sum())
        raise GenbenchError(f"{what}: {bad} of {t.shape[0]} images hold NaN or inf; "
                            "remove or fix them")
    lo, hi = float(t.min()), float(t.max())
    if lo < -FLOAT_SLACK or hi > 1 + FLOAT_SLACK:  # a sigmoid's rounding is no error
        hint = " (they look like 0..255: pass uint8, or divide by 255)" if hi > 1.5 else ""
        raise GenbenchError(f"{what} are float with values {lo:.4g}..{hi:.4g}, outside [0, 1]{hint}")
    return t.clamp(0, 1)


def _read_folder(folder: Path) -> OutsideSamples:
    import numpy as np
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise GenbenchError(f"{folder} holds no PNG or JPEG images")
    arrays, first = [], None
    for p in files:
        try:
            with Image.open(p) as im:
                mode = "RGB" if im.mode in ("P", "RGB") else im.mode
                a = np.asarray(im.convert(mode) if im.mode != mode else im)
        except Exception as err:  # noqa: BLE001  (truncated or not an image)
            raise GenbenchError(f"{p} is not a readable image ({type(err).__name__}); "
                                "remove it or fix it") from None
        if mode not in ("L", "RGB"):
            raise GenbenchError(f"{p} is a {mode} image; save samples as 8-bit greyscale (L) "
                                "or RGB")
        if first is None:
            first = (mode, a.shape)
        elif (mode, a.shape) != first:
            raise GenbenchError(f"{folder} mixes image sizes or modes: {files[0].name} is "
                                f"{first[0]} {first[1][1]}x{first[1][0]}, {p.name} is {mode} "
                                f"{a.shape[1]}x{a.shape[0]}; make them all alike")
        arrays.append(a)
    stack = torch.from_numpy(np.stack(arrays))  # (N, H, W) or (N, H, W, 3), uint8
    stack = stack.permute(0, 3, 1, 2) if stack.dim() == 4 else stack[:, None]
    return OutsideSamples(stack.contiguous(), str(folder), file_sha256(files, names=True),
                          f"{first[0]} images")


def fit_to(samples: OutsideSamples, shape: tuple[int, int, int], dataset: str,
           resize: str | None) -> OutsideSamples:
    """The samples laid out (N, C, H, W) for a dataset of image ``shape`` (C, H, W); another
    channel count is refused, another size too unless ``resize`` is given."""
    c, h, w = shape
    t, layout = samples.images, samples.layout
    if resize is not None and resize not in RESIZE_MODES:
        raise GenbenchError(f"unknown --resize {resize!r}; use {', '.join(RESIZE_MODES)}")
    if not layout:
        t, layout = _layout(t, c, dataset)
    if t.shape[1] != c:
        raise GenbenchError(f"the samples have {t.shape[1]} channels; {dataset} images have {c}")
    if tuple(t.shape[2:]) != (h, w) and resize is None:
        raise GenbenchError(f"the samples are {t.shape[2]}x{t.shape[3]}; {dataset} images are "
                            f"{h}x{w}: pass --resize bilinear (recorded with the numbers) or "
                            "resize them yourself")
    return OutsideSamples(t, samples.source, samples.sha256, layout)


def _layout(t: torch.Tensor, c: int, dataset: str) -> tuple[torch.Tensor, str]:
    if t.dim() == 3:
        if c != 1:
            raise GenbenchError(f"the samples are (N, H, W) with no channel axis; {dataset} "
                                f"images have {c} channels: give (N, H, W, {c}) or (N, {c}, H, W)")
        return t[:, None], "NHW"
    if t.shape[1] == c:
        return t, "NCHW"
    if t.shape[3] == c:
        return t.permute(0, 3, 1, 2).contiguous(), "NHWC"
    channels = t.shape[3] if t.shape[3] in (1, 3, 4) else t.shape[1]
    raise GenbenchError(f"the samples have shape {tuple(t.shape)} ({channels} channels?); "
                        f"{dataset} images have {c} channel(s): give (N, H, W, {c}) or "
                        f"(N, {c}, H, W)")


def to_unit(block: torch.Tensor, variant: str, size: tuple[int, int],
            resize: str | None) -> torch.Tensor:
    """A block (m, C, H, W) of samples as float images in [0, 1] of ``size``: uint8 in the
    variant's mean form (as the dataset's own images), floats as given; resized if asked."""
    x = mean_images(block, variant) if block.dtype == torch.uint8 else block.float()
    if tuple(x.shape[2:]) != tuple(size):
        smooth = resize in ("bilinear", "bicubic")
        x = F.interpolate(x, size=size, mode=resize or "bilinear",
                          **({"align_corners": False, "antialias": True} if smooth else {}))
    return x.clamp(0, 1)


def resize_record(samples: OutsideSamples, size: tuple[int, int], resize: str | None) -> str | None:
    """How the samples were resized (for config.json), or None when they were not."""
    given = tuple(samples.images.shape[2:])
    if given == tuple(size):
        return None
    how = f"{resize}, antialiased" if resize in ("bilinear", "bicubic") else resize
    return (f"{given[0]}x{given[1]} -> {size[0]}x{size[1]} by torch interpolate ({how}), "
            "then clamped to [0, 1]")
