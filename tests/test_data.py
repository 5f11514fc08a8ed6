"""Dataset sources: file layouts, fallbacks, clear errors, fixed splits and the variants.

Files are generated in temporary folders in torchvision's layouts (IDX written by a tiny
independent writer below; CelebA as small JPEGs with its two text files), so nothing here
downloads or depends on a cache, except one test that reads the real Fashion-MNIST from
Debian's package, which this project's machines and CI install.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from genbench.data import DataRequest, load_dataset
from genbench.data import celeba as celeba_source
from genbench.data import mnist as mnist_source
from genbench.data.files import data_root, try_download
from genbench.data.idx import read_idx
from genbench.errors import DataMissing, GenbenchError

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}
MNIST_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    monkeypatch.delenv("GENBENCH_DATA", raising=False)


# -- generated files ----------------------------------------------------------------------
def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    """LeCun's format, written independently of the reader under test."""
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[array.dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = False,
                seed: int = 0) -> None:
    """Four IDX files; image i of the training set carries i in pixel (0, 0) and its label
    in pixel (0, 1), so tests can tell which image went where."""
    rng = np.random.default_rng(seed)
    arrays = []
    for n in (n_train, n_test):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        x[:, 0, 0], x[:, 0, 1] = np.arange(n), y
        arrays += [x, y]
    for name, array in zip(MNIST_NAMES, arrays, strict=True):
        write_idx(folder / name, array, gz=gz)


def image_ids(x: torch.Tensor) -> set[int]:
    return set(x[:, 0, 0, 0].tolist())


# -- the IDX reader -----------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_read_idx_round_trips(tmp_path: Path, gz: bool, dtype: type) -> None:
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype) % 200
    back = read_idx(write_idx(tmp_path / "a-idx3-ubyte", array, gz=gz))
    assert back.dtype == array.dtype and back.shape == (2, 3, 5)
    np.testing.assert_array_equal(back, array)


def _truncated_gz(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])


@pytest.mark.parametrize(("damage", "message"), [
    (lambda p: p.write_bytes(b"\x12\x34" + p.read_bytes()[2:]), "bad magic number"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "truncated"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "longer than its header"),
    (lambda p: p.write_bytes(p.read_bytes()[:6]), "truncated inside its header"),
])
def test_corrupt_idx_names_the_file_and_the_fix(tmp_path: Path, damage, message: str) -> None:
    write_mnist(tmp_path)
    victim = tmp_path / MNIST_NAMES[0]
    damage(victim)
    with pytest.raises(DataMissing, match=message) as err:
        load_dataset(DataRequest("mnist", data_dir=str(tmp_path)))
    assert str(victim) in str(err.value) and "delete it" in str(err.value)
    assert "--data-dir" in str(err.value)


def test_damaged_gzip_is_a_clear_error(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw", gz=True)
    victim = tmp_path / "MNIST" / "raw" / (MNIST_NAMES[2] + ".gz")
    victim.write_bytes(victim.read_bytes()[:-40])  # a cut-off download
    with pytest.raises(GenbenchError, match="damaged gzip stream") as err:
        load_dataset(DataRequest("mnist", data_dir=str(tmp_path)))
    assert str(victim) in str(err.value)


def test_labels_that_do_not_match_the_images(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    write_idx(tmp_path / MNIST_NAMES[3], np.zeros(7, dtype=np.uint8))  # 7 labels, 20 images
    with pytest.raises(DataMissing, match="does not belong together"):
        load_dataset(DataRequest("mnist", data_dir=str(tmp_path)))


def test_an_incomplete_set_says_which_files_are_missing(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    (tmp_path / MNIST_NAMES[1]).unlink()
    with pytest.raises(DataMissing, match=MNIST_NAMES[1]):
        load_dataset(DataRequest("mnist", data_dir=str(tmp_path)))


# -- mnist --------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_torchvision_layout(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path / "MNIST" / "raw", gz=gz)
    b = load_dataset(DataRequest("mnist", data_dir=str(tmp_path)))
    assert b.info.name == "mnist" and b.info.variant == "dynamic" and b.notes == []
    assert b.info.splits == {"train": 50, "val": 10, "test": 20}  # 5/6 : 1/6 of the 60
    assert b.train.x.shape == (50, 1, 28, 28) and b.train.x.dtype == torch.uint8
    assert b.train.y.dtype == torch.int64 and b.info.num_classes == 10
    # train and val partition the 60 training images; labels travel with their images
    assert image_ids(b.train.x) | image_ids(b.val.x) == set(range(60))
    assert not image_ids(b.train.x) & image_ids(b.val.x)
    for split in (b.train, b.val, b.test):
        assert torch.equal(split.x[:, 0, 0, 1].long(), split.y)
    assert image_ids(b.test.x) == set(range(20))
    again = load_dataset(DataRequest("mnist", data_dir=str(tmp_path)))
    assert torch.equal(again.val.x, b.val.x)  # the validation split is fixed


def test_mnist_raw_idx_directly_in_the_root(tmp_path: Path) -> None:
    write_mnist(tmp_path, gz=False)
    for name in MNIST_NAMES[:2]:  # the original archive's dotted spelling also counts
        (tmp_path / name).rename(tmp_path / name.replace("-idx", ".idx"))
    b = load_dataset(DataRequest("mnist", data_dir=str(tmp_path)))
    assert b.info.name == "mnist" and b.source == str(tmp_path)
    assert len(b.train) + len(b.val) == 60


def test_mnist_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path))
    assert data_root(DataRequest("mnist")) == tmp_path
    assert data_root(DataRequest("mnist", data_dir="/elsewhere")) == Path("/elsewhere")
    monkeypatch.delenv("GENBENCH_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root(DataRequest("mnist")) == tmp_path / "home" / ".cache" / "genbench" / "data"
    write_mnist(tmp_path / "MNIST" / "raw")
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path))
    assert load_dataset(DataRequest("mnist")).info.name == "mnist"


def test_mnist_offline_without_files_falls_back_to_mnist5k(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("offline: torchvision must not be asked to download")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_download)
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path))  # the default root; no --data-dir
    b = load_dataset(DataRequest("mnist"))
    assert b.info.name == "mnist-5k"
    assert b.info.splits == {"train": 4000, "val": 500, "test": 500}
    (warning,) = b.notes
    assert warning.startswith("no MNIST files in") and "recorded as mnist-5k" in warning
    assert "--data-dir" in warning
    assert str(tmp_path / "MNIST" / "raw") in warning and "GENBENCH_OFFLINE" in warning


def test_mnist_download_path_reads_what_torchvision_fetched(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    calls = []

    def fake_mnist(root: str, download: bool) -> None:  # stands in for the network
        calls.append((root, download))
        write_mnist(Path(root) / "MNIST" / "raw", gz=True)

    monkeypatch.delenv("GENBENCH_OFFLINE")
    monkeypatch.setattr(torchvision.datasets, "MNIST", fake_mnist)
    b = load_dataset(DataRequest("mnist", data_dir=str(tmp_path)))
    assert calls == [(str(tmp_path), True)] and b.info.name == "mnist"


def test_failed_download_leaves_no_partial_files(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENBENCH_OFFLINE")
    (tmp_path / "MNIST").mkdir()
    (tmp_path / "MNIST" / "keep.txt").write_text("the user's")

    def half_download() -> None:
        (tmp_path / "MNIST" / "raw").mkdir()
        (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried ...")

    reason = try_download(half_download, tmp_path / "MNIST")
    assert reason == "download failed: RuntimeError: Error downloading train-images-idx3-ubyte.gz"
    assert sorted(p.name for p in (tmp_path / "MNIST").rglob("*")) == ["keep.txt"]
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    assert try_download(half_download, tmp_path / "MNIST") == "GENBENCH_OFFLINE is set"
    assert not (tmp_path / "MNIST" / "raw").exists()


# -- variants -----------------------------------------------------------------------------
@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    write_mnist(tmp_path / "MNIST" / "raw", n_train=60, n_test=20)
    return tmp_path


def _by_index(bundle, batch_size: int, epoch: int) -> torch.Tensor:
    out = torch.full((len(bundle.train), 1, 28, 28), -1.0)
    for batch in bundle.train_batches(batch_size, seed=3, epoch=epoch):
        out[batch.index] = batch.x
    return out


def test_dynamic_binarization_is_fresh_each_epoch_and_eval_is_fixed(mnist_dir: Path) -> None:
    b = load_dataset(DataRequest("mnist", data_dir=str(mnist_dir), variant="dynamic"))
    e0, e1 = _by_index(b, 16, 0), _by_index(b, 16, 1)
    assert set(e0.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(e0, e1)
    assert torch.equal(e0, _by_index(b, 16, 0))  # but reproducible for (seed, epoch)
    again = load_dataset(DataRequest("mnist", data_dir=str(mnist_dir), variant="dynamic"))
    assert torch.equal(b.eval_x("test"), again.eval_x("test"))
    assert torch.equal(b.eval_x("val"), b.eval_x("val"))
    assert set(b.eval_x("test").unique().tolist()) <= {0.0, 1.0}
    # a Bernoulli draw of p = v/255: the mean intensity matches within sampling noise
    p = b.test.x.float() / 255
    assert abs(b.eval_x("test").mean() - p.mean()) < 4 * (p * (1 - p)).mean().sqrt() / p.numel() ** 0.5


def test_static_binarization_ignores_batch_size_and_order(mnist_dir: Path) -> None:
    b = load_dataset(DataRequest("mnist", data_dir=str(mnist_dir), variant="static"))
    reference = _by_index(b, 7, 0)
    assert (reference >= 0).all()
    assert torch.equal(reference, _by_index(b, 16, 0))
    assert torch.equal(reference, _by_index(b, 50, 5))  # another epoch, another order
    assert torch.equal(b.eval_x("train"), reference)  # scored as trained
    assert set(reference.unique().tolist()) == {0.0, 1.0}


def test_continuous_is_dequantized_within_one_level(mnist_dir: Path) -> None:
    b = load_dataset(DataRequest("mnist", data_dir=str(mnist_dir), variant="continuous"))
    assert b.info.observation == "gaussian"
    v = b.test.x.float()
    x = b.eval_x("test")
    assert x.min() >= 0 and x.max() <= 1
    assert ((x - v / 256) >= 0).all() and ((x - v / 256) < 1 / 256).all()  # (v + u) / 256
    assert ((x - v / 255).abs() <= 1 / 256 + 1e-6).all()
    e0, e1 = _by_index(b, 16, 0), _by_index(b, 16, 1)
    assert not torch.equal(e0, e1)  # fresh noise in training


def test_unknown_variant_is_a_clear_error(mnist_dir: Path) -> None:
    with pytest.raises(GenbenchError, match="dynamic, static, continuous"):
        load_dataset(DataRequest("mnist", data_dir=str(mnist_dir), variant="grey"))


# -- fashion-mnist ------------------------------------------------------------------------
def test_fashion_mnist_from_a_debian_style_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    write_mnist(debian, n_train=30, n_test=12, gz=True)
    monkeypatch.setattr(mnist_source, "DEBIAN_FASHION_DIR", debian)
    b = load_dataset(DataRequest("fashion-mnist", data_dir=str(tmp_path / "empty-cache")))
    assert b.info.name == "fashion-mnist" and b.source == str(debian)
    assert b.info.splits == {"train": 25, "val": 5, "test": 12}
    assert b.info.label_names[0] == "T-shirt/top" and b.info.label_names[9] == "Ankle boot"
    cache = tmp_path / "cache"
    write_mnist(cache / "FashionMNIST" / "raw", n_train=12, n_test=6)  # the cache comes first
    assert load_dataset(DataRequest("fashion-mnist", data_dir=str(cache))).info.splits["test"] == 6


def test_fashion_mnist_missing_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist_source, "DEBIAN_FASHION_DIR", tmp_path / "not-installed")
    with pytest.raises(DataMissing, match="apt-get install dataset-fashion-mnist") as err:
        load_dataset(DataRequest("fashion-mnist", data_dir=str(tmp_path)))
    assert str(tmp_path / "not-installed") in str(err.value) and "--data-dir" in str(err.value)


def test_real_fashion_mnist_from_the_debian_package() -> None:
    if not mnist_source.DEBIAN_FASHION_DIR.is_dir():
        pytest.fail(f"{mnist_source.DEBIAN_FASHION_DIR} is absent: "
                    "apt-get install dataset-fashion-mnist (the suite expects the real data)")
    b = load_dataset(DataRequest("fashion-mnist", data_dir="/nonexistent-genbench-cache"))
    assert b.info.splits == {"train": 50000, "val": 10000, "test": 10000}
    assert len(b.train) + len(b.val) == 60000 and b.train.x.shape[1:] == (1, 28, 28)
    assert torch.bincount(b.test.y).tolist() == [1000] * 10  # the test set is balanced
    assert abs(b.test.x.float().mean().item() / 255 - 0.2868) < 0.002  # published mean intensity


# -- celeba -------------------------------------------------------------------------------
ATTRS = tuple(f"Attr_{i}" for i in range(40))


def write_celeba(root: Path, n: int = 12, seed: int = 0) -> tuple[list[str], np.ndarray, list[int]]:
    """n JPEGs 40 wide x 80 tall; image 0 is black, red, red, black in horizontal quarters."""
    rng = np.random.default_rng(seed)
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    files = [f"{i + 1:06d}.jpg" for i in range(n)]
    for i, name in enumerate(files):
        pixels = rng.integers(0, 256, size=(80, 40, 3), dtype=np.uint8)
        if i == 0:
            pixels[:] = 0
            pixels[20:60, :, 0] = 255
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)
    values = rng.choice([-1, 1], size=(n, 40))
    rows = [f"{f} " + " ".join(f"{v:2d}" for v in row) for f, row in zip(files, values, strict=True)]
    (folder / "list_attr_celeba.txt").write_text(f"{n}\n{' '.join(ATTRS)}\n" + "\n".join(rows) + "\n")
    parts = [0] * (n // 2) + [1] * (n // 4) + [2] * (n - n // 2 - n // 4)
    write_partition(folder, files, parts)
    return files, values, parts


def write_partition(folder: Path, files: list[str], parts: list[int]) -> None:
    lines = "".join(f"{f} {p}\n" for f, p in zip(files, parts, strict=True))
    (folder / "list_eval_partition.txt").write_text(lines)


def test_celeba_from_torchvision_layout(tmp_path: Path) -> None:
    files, values, parts = write_celeba(tmp_path)
    b = load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))
    assert b.info.name == "celeba" and b.info.variant == "continuous"
    assert b.info.shape == (3, 64, 64) and b.info.num_attributes == 40 and b.info.label_names == ATTRS
    assert b.info.splits == {"train": 6, "val": 3, "test": 3}  # the given partition, as is
    assert b.train.x.dtype == torch.uint8 and b.train.x.shape == (6, 3, 64, 64)
    labels = torch.from_numpy((values + 1) / 2).float()
    assert torch.equal(b.train.y, labels[:6]) and torch.equal(b.test.y, labels[9:])
    assert b.train.y.dtype == torch.float32
    # Resize(64) makes image 0 64x128; CenterCrop(64) keeps rows 32..96: the red middle half
    red = b.train.x[0].float()
    assert red[0].mean() > 235 and red[1:].mean() < 20
    x = b.eval_x("test")
    assert x.shape == (3, 3, 64, 64) and x.min() >= 0 and x.max() <= 1


def test_celeba_caches_decoded_images_keyed_by_file_list(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    files, _, parts = write_celeba(tmp_path)
    first = load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))
    folder = tmp_path / "celeba"
    assert {p.name for p in folder.glob("genbench_64x64_*.pt")} == {
        "genbench_64x64_train.pt", "genbench_64x64_val.pt", "genbench_64x64_test.pt"}

    decoded: list[int] = []
    real_decode = celeba_source.decode_images

    def counting_decode(image_dir: Path, names: list[str]) -> torch.Tensor:
        decoded.append(len(names))
        return real_decode(image_dir, names)

    monkeypatch.setattr(celeba_source, "decode_images", counting_decode)
    second = load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))
    assert decoded == [] and torch.equal(first.train.x, second.train.x)  # all from the cache
    parts[0] = 2  # move an image from train to test: both caches are stale, val's is not
    write_partition(folder, files, parts)
    third = load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))
    assert sorted(decoded) == [4, 5] and third.info.splits == {"train": 5, "val": 3, "test": 4}
    assert torch.equal(third.test.x[0], first.train.x[0])


def test_celeba_in_a_read_only_folder_loads_with_a_note(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    write_celeba(tmp_path)

    def read_only(obj: object, path: Path) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(celeba_source.torch, "save", read_only)
    b = load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))
    assert len(b.train) == 6 and len(b.notes) == 3 and "could not cache" in b.notes[0]
    assert not list((tmp_path / "celeba").glob("genbench_*"))  # no temp files left behind


def test_celeba_missing_files_are_listed_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataMissing) as err:
        load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))
    message = str(err.value)
    assert "\n" not in message and "--data-dir" in message
    for part in ("img_align_celeba/", "list_attr_celeba.txt", "list_eval_partition.txt"):
        assert part in message
    write_celeba(tmp_path)
    (tmp_path / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(DataMissing, match="lacks list_eval_partition.txt;"):
        load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))


def test_celeba_missing_or_corrupt_images_and_text(tmp_path: Path) -> None:
    files, _, _ = write_celeba(tmp_path)
    folder = tmp_path / "celeba"
    (folder / "img_align_celeba" / files[7]).unlink()
    with pytest.raises(DataMissing, match=f"1 images of the val split are missing .*{files[7]}"):
        load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))
    (folder / "img_align_celeba" / files[7]).write_bytes(b"not a jpeg")
    with pytest.raises(DataMissing, match=f"{files[7]} cannot be decoded"):
        load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))
    attr = folder / "list_attr_celeba.txt"
    attr.write_text("\n".join(attr.read_text().splitlines()[:-3]))
    with pytest.raises(DataMissing, match="announces 12 images but lists 9"):
        load_dataset(DataRequest("celeba", data_dir=str(tmp_path)))


@pytest.mark.parametrize(("body", "message"), [
    ("3\nA B\nx.jpg 1 -1\ny.jpg 1\nz.jpg -1 1\n", "line 4 does not have 2 values"),
    ("3\nA B\nx.jpg 1 -1\ny.jpg 1 yes\nz.jpg -1 1\n", "has non-numbers"),
    ("3\nA B\nx.jpg 1 -1\ny.jpg 1 0\nz.jpg -1 1\n", "other than -1 and 1"),
    ("A B\nx.jpg 1 -1\n", "does not start with an image count"),
])
def test_celeba_bad_attribute_files(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "attr.txt").write_text(body)
    with pytest.raises(DataMissing, match=message):
        celeba_source.read_attributes(tmp_path / "attr.txt")


def test_celeba_attribute_file_with_crlf_and_padding(tmp_path: Path) -> None:
    (tmp_path / "attr.txt").write_text("2\r\nA B \r\nx.jpg  1 -1\r\ny.jpg -1  1\r\n")
    names, files, values = celeba_source.read_attributes(tmp_path / "attr.txt")
    assert names == ("A", "B") and files == ["x.jpg", "y.jpg"]
    np.testing.assert_array_equal(values, [[1, -1], [-1, 1]])


# -- the built-in small sets --------------------------------------------------------------
@pytest.fixture(scope="module")
def mnist5k_pair():
    return load_dataset(DataRequest("mnist-5k")), load_dataset(DataRequest("mnist-5k"))


def _rows(x: torch.Tensor) -> set[bytes]:
    return {bytes(r) for r in x.flatten(1).numpy()}


@pytest.mark.parametrize("name", ["synthetic", "synthetic-rgb", "mnist-5k"])
def test_small_sets_have_stratified_fixed_disjoint_splits(name: str, mnist5k_pair) -> None:
    if name == "mnist-5k":
        b, again = mnist5k_pair
    else:
        b, again = load_dataset(DataRequest(name)), load_dataset(DataRequest(name))
    for split in ("train", "val", "test"):
        assert torch.equal(b.split(split).x, again.split(split).x)  # fixed
        assert torch.equal(b.eval_x(split), again.eval_x(split))
    assert not _rows(b.train.x) & _rows(b.test.x) and not _rows(b.val.x) & _rows(b.test.x)
    if name == "synthetic-rgb":
        assert b.info.shape == (3, 64, 64) and b.train.y.shape == (140, 40)
        assert set(b.train.y.unique().tolist()) == {0.0, 1.0} and b.info.observation == "gaussian"
        return
    assert b.info.shape == (1, 28, 28) and b.info.num_classes == 10
    total = sum(b.info.splits.values())
    for split in ("train", "val", "test"):  # every class in the proportion of the split
        counts = torch.bincount(b.split(split).y, minlength=10)
        assert (counts == len(b.split(split)) // 10).all(), (split, counts)
    assert total == (600 if name == "synthetic" else 5000)
