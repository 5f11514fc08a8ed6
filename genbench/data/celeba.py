"""``celeba``: CelebA (Liu et al. 2015) from torchvision's folder layout, 64x64, 40 attributes.

Expected under the data root (what ``torchvision.datasets.CelebA(root, download=True)``
leaves)::

    <root>/celeba/img_align_celeba/000001.jpg ...
    <root>/celeba/list_attr_celeba.txt     line 1: count; line 2: the 40 names; then
                                           "000001.jpg -1 1 ..." (-1 absent, 1 present)
    <root>/celeba/list_eval_partition.txt  "000001.jpg 0" with 0/1/2 = train/val/test

Images go through torchvision's ``Resize(64)`` then ``CenterCrop(64)`` on PIL images, the
preprocessing of the DCGAN example (Radford et al. 2016). Decoding 200,000 JPEGs takes
minutes, so each split's decoded uint8 tensor (N, 3, 64, 64) is cached once under
``<root>/celeba/genbench_64x64_<split>.pt``, keyed by its file list (delete those files
after replacing images under the same names). The published
partitions are used as they are: no random validation split.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genbench.data.bundle import DataBundle, DataRequest, Split, make_bundle
from genbench.data.files import data_root
from genbench.errors import DataMissing
from genbench.registry import register_dataset

SIZE = 64
IMAGE_DIR = "img_align_celeba"
ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}  # list_eval_partition.txt's codes
CACHE_FORMAT = f"genbench-celeba-v1 Resize({SIZE}) CenterCrop({SIZE}) PIL"  # part of the cache key
HOW_TO_GET = ("get CelebA with torchvision.datasets.CelebA(ROOT, download=True) or from "
              "mmlab.ie.cuhk.edu.hk/projects/CelebA.html, then pass --data-dir ROOT")


# -- the text files -----------------------------------------------------------------------
def check_layout(folder: Path) -> None:
    """One error listing everything that is missing, rather than one item per run."""
    wanted = {IMAGE_DIR + "/": (folder / IMAGE_DIR).is_dir(),
              ATTR_FILE: (folder / ATTR_FILE).is_file(),
              PARTITION_FILE: (folder / PARTITION_FILE).is_file()}
    missing = [name for name, present in wanted.items() if not present]
    if missing:
        raise DataMissing(f"celeba: {folder} lacks {', '.join(missing)}; {HOW_TO_GET}")


def read_attributes(path: Path) -> tuple[tuple[str, ...], list[str], np.ndarray]:
    """(attribute names, file names, (N, A) int8 values in {-1, 1}) from list_attr_celeba.txt."""
    lines = _read_text(path).splitlines()
    if len(lines) < 2 or not lines[0].strip().isdigit():
        raise DataMissing(f"{path} does not start with an image count and the attribute names; "
                          f"is it CelebA's {ATTR_FILE}?")
    names = tuple(lines[1].split())
    rows = [line.split(None, 1) for line in lines[2:] if line.strip()]  # [file, "v1 ... vA"]
    if len(rows) != int(lines[0]):
        raise DataMissing(f"{path} announces {int(lines[0])} images but lists {len(rows)}; "
                          "it is truncated: fetch it again")
    try:  # one C-level parse of 8 million numbers: several times faster than row by row
        with warnings.catch_warnings():  # older numpy warns where newer raises: size is checked
            warnings.simplefilter("ignore", DeprecationWarning)
            values = np.fromstring(" ".join(r[1] if len(r) > 1 else "" for r in rows),
                                   dtype=np.int64, sep=" ")
    except ValueError:  # a non-number
        values = np.empty(0, dtype=np.int64)
    if values.size != len(rows) * len(names):
        bad = next((i for i, r in enumerate(rows) if len(r) < 2 or len(r[1].split()) != len(names)), None)
        where = f"line {bad + 3} does not have {len(names)} values" if bad is not None else "has non-numbers"
        raise DataMissing(f"{path} {where}; fetch the file again")
    values = values.reshape(len(rows), len(names))
    if not ((values == 1) | (values == -1)).all():
        raise DataMissing(f"{path} has attribute values other than -1 and 1; fetch the file again")
    return names, [r[0] for r in rows], values.astype(np.int8)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataMissing(f"{path} is not UTF-8 text (byte {err.start}); it is not CelebA's "
                          "file: fetch it again") from None
    except OSError as err:
        raise DataMissing(f"{path} is unreadable ({err.strerror or err})") from None


def read_partition(path: Path) -> dict[str, int]:
    """File name -> 0 (train), 1 (val) or 2 (test), from list_eval_partition.txt."""
    out: dict[str, int] = {}
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
            raise DataMissing(f"{path} line {number} is not 'FILE 0|1|2': {line.strip()[:60]!r}")
        out[parts[0]] = int(parts[1])
    return out


# -- the images ---------------------------------------------------------------------------
def decode_images(image_dir: Path, files: list[str]) -> torch.Tensor:
    """(N, 3, 64, 64) uint8: each JPEG resized (shorter side 64) and centre-cropped."""
    from PIL import Image, UnidentifiedImageError
    from torchvision import transforms

    pipeline = transforms.Compose([transforms.Resize(SIZE), transforms.CenterCrop(SIZE),
                                   transforms.PILToTensor()])

    def one(name: str) -> torch.Tensor:
        try:
            with Image.open(image_dir / name) as img:
                return pipeline(img.convert("RGB"))  # (3, 64, 64) uint8
        except (OSError, UnidentifiedImageError, SyntaxError) as err:
            raise DataMissing(f"{image_dir / name} cannot be decoded ({err}); replace the file "
                              "or fetch CelebA again") from err

    out = torch.empty(len(files), 3, SIZE, SIZE, dtype=torch.uint8)
    workers = min(4, os.cpu_count() or 1)  # PIL releases the GIL while decoding and resizing
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for i, x in enumerate(_progress(pool.map(one, files), len(files))):
            out[i] = x
    return out


def _progress(items: Iterable[torch.Tensor], total: int) -> Iterable[torch.Tensor]:
    if total < 2000:
        return items
    from rich.progress import track

    return track(items, total=total, description=f"decoding {total} CelebA images (once)",
                 transient=True)


def cache_key(files: list[str]) -> str:
    return hashlib.sha256("\n".join([CACHE_FORMAT, *files]).encode()).hexdigest()


def cached_images(folder: Path, split: str, files: list[str], notes: list[str]) -> torch.Tensor:
    """The split's decoded images from the cache when its key matches, else decoded and cached."""
    path = folder / f"genbench_{SIZE}x{SIZE}_{split}.pt"
    key = cache_key(files)
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=True)
            if saved.get("key") == key and saved["x"].shape == (len(files), 3, SIZE, SIZE):
                return saved["x"]
        except Exception:  # an unreadable cache is rebuilt, never trusted
            pass
    missing = [f for f in files if not (folder / IMAGE_DIR / f).is_file()]
    if missing:
        raise DataMissing(f"celeba: {len(missing)} images of the {split} split are missing from "
                          f"{folder / IMAGE_DIR} (e.g. {missing[0]}); {HOW_TO_GET}")
    x = decode_images(folder / IMAGE_DIR, files)
    _save_atomically({"key": key, "x": x}, path, notes)
    return x


def _save_atomically(obj: dict, path: Path, notes: list[str]) -> None:
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except OSError as err:  # a read-only data folder still works, just slower next time
        tmp.unlink(missing_ok=True)
        notes.append(f"could not cache decoded CelebA images at {path} ({err.strerror or err}); "
                     "they will be decoded again next run")


# -- the source ---------------------------------------------------------------------------
@register_dataset("celeba", description="CelebA faces, 64x64 centre crops, 40 binary attributes, "
                  "official train/val/test partitions (torchvision's folder layout)")
def load_celeba(request: DataRequest) -> DataBundle:
    folder = data_root(request) / "celeba"
    check_layout(folder)
    names, files, values = read_attributes(folder / ATTR_FILE)
    partition = read_partition(folder / PARTITION_FILE)
    row = {f: i for i, f in enumerate(files)}
    unknown = [f for f in partition if f not in row]
    if unknown:
        raise DataMissing(f"{folder / PARTITION_FILE} lists {len(unknown)} images that "
                          f"{ATTR_FILE} does not (e.g. {unknown[0]}); the two files do not match")
    labels = torch.from_numpy((values + 1) // 2).float()  # (N, A) in {0, 1}
    notes: list[str] = []
    splits: dict[str, Split] = {}
    for split, code in SPLIT_CODES.items():
        members = [f for f, c in partition.items() if c == code]
        if not members:
            raise DataMissing(f"celeba: {folder / PARTITION_FILE} lists no images for the {split} "
                              f"split (code {code}); {HOW_TO_GET}")
        rows = torch.tensor([row[f] for f in members], dtype=torch.int64)
        splits[split] = Split(cached_images(folder, split, members, notes), labels[rows])
    return make_bundle(
        request=request, name="celeba", train=splits["train"], val=splits["val"],
        test=splits["test"], val_size=len(splits["val"]), default_variant="continuous",
        num_attributes=len(names), label_names=names, notes=notes, source=str(folder),
    )
