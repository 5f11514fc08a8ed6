"""Morpho-MNIST measures against hand-drawn images with known thickness, slant and size."""

from __future__ import annotations

import math

import pytest
import torch

from genbench.data import morpho
from genbench.data.morpho import MEASURES, measure, measure_cached

T, S, W, H, A = (MEASURES.index(k) for k in ("thickness", "slant", "width", "height", "area"))


def band(angle_deg: float, thickness: float, top: int = 4, bottom: int = 24, size: int = 28,
         sub: int = 8) -> torch.Tensor:
    """A straight stroke leaning ``angle_deg`` right of vertical, ``thickness`` px across
    horizontally, rows top..bottom-1, rendered with sub x sub supersampling (anti-aliased)."""
    r = (torch.arange(size * sub, dtype=torch.float64) + 0.5) / sub  # subpixel centres
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    centre = size / 2 + math.tan(math.radians(angle_deg)) * ((top + bottom) / 2 - yy)
    inside = ((xx - centre).abs() < thickness / 2) & (yy >= top) & (yy < bottom)
    return inside.double().view(size, sub, size, sub).mean((1, 3))  # (size, size) in [0, 1]


def rectangle(width: int, height: int, size: int = 28) -> torch.Tensor:
    img = torch.zeros(size, size)
    img[5 : 5 + height, 7 : 7 + width] = 1.0
    return img


def test_vertical_stroke_thickness_and_size():
    for t in (2, 3, 5):
        m = measure(band(0.0, t)[None])[0]
        assert m[T] == pytest.approx(t, rel=0.10), (t, m)
        assert abs(m[S]) < 1e-6
        assert m[W] == t and m[H] == 20
        assert m[A] == pytest.approx(20 * t, abs=0.6)  # corners rounded, edges anti-aliased


def test_slanted_stroke_angle():
    for angle in (-25.0, 10.0, 30.0):
        m = measure(band(angle, 3.0)[None])[0]
        assert math.degrees(m[S]) == pytest.approx(angle, abs=2.0)
        # width is taken along the slant: a slanted stroke is as narrow as a straight one
        assert m[W] == pytest.approx(3.0, abs=1.0)
        assert m[T] == pytest.approx(3.0 * math.cos(math.radians(angle)), rel=0.15)


def test_rectangle_width_height_area_exact():
    m = measure(rectangle(6, 10)[None])[0]
    assert (m[W], m[H]) == (6.0, 10.0)
    # the four corners lose one upsampled pixel each (1/16 px^2) to the bicubic rounding
    assert m[A] == 60.0 - 4 / 16
    assert abs(m[S]) < 1e-6


def test_uint8_and_float_agree_and_empty_image_is_zero():
    imgs = torch.stack([rectangle(4, 12), band(15.0, 2.5), torch.zeros(28, 28)])
    u8 = (imgs * 255).round().to(torch.uint8)[:, None]
    assert torch.allclose(measure(u8), measure(u8.float() / 255))
    assert (measure(imgs)[2] == 0).all()


def test_batch_equals_one_by_one(monkeypatch: pytest.MonkeyPatch):
    imgs = torch.stack([band(a, 2 + a / 20) for a in range(0, 40, 5)])
    one = torch.cat([measure(imgs[i : i + 1]) for i in range(len(imgs))])
    monkeypatch.setattr(morpho, "CHUNK", 3)
    assert torch.equal(measure(imgs), one)


def test_thicker_strokes_measure_thicker():
    values = [float(measure(band(12.0, t)[None])[0, T]) for t in (1.5, 2.5, 3.5, 4.5)]
    assert values == sorted(values) and values[-1] > 2.5 * values[0]


def test_cached_by_content(tmp_path, monkeypatch: pytest.MonkeyPatch):
    imgs = (torch.stack([band(5.0, 3.0), rectangle(5, 9)]) * 255).to(torch.uint8)
    first = measure_cached(imgs, tmp_path)
    assert len(list((tmp_path / "morpho").glob("*.pt"))) == 1
    monkeypatch.setattr(morpho, "measure", lambda x: pytest.fail("measured again"))
    assert torch.equal(measure_cached(imgs, tmp_path), first)
    monkeypatch.undo()
    imgs[0, 0, 0] = 255  # other content, other file
    measure_cached(imgs, tmp_path)
    assert len(list((tmp_path / "morpho").glob("*.pt"))) == 2


def test_morpho_dataset_attaches_aligned_measures(tmp_path, monkeypatch: pytest.MonkeyPatch):
    from genbench.data import DataRequest, load_dataset

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))
    b = load_dataset(DataRequest("synthetic-morpho"))
    assert b.info.name == "synthetic-morpho" and b.measure_names == MEASURES
    for split in (b.train, b.val, b.test):
        assert split.measures.shape == (len(split), len(MEASURES))
    assert torch.equal(b.test.measures[:4], measure(b.test.x[:4]))
    sub = b.subset_train(50)  # rows and their measures move together
    assert torch.equal(sub.train.measures[:3], measure(sub.train.x[:3]))
    assert morpho.measure_names("fashion-mnist-morpho") == ("width", "height", "area")
    assert morpho.measure_names("mnist-5k") == ()


def test_morpho_data_without_scikit_image_names_the_extra(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """scikit-image is the optional `morpho` extra: without it a *-morpho dataset is one
    GenbenchError naming the install line (the CLI's `error: ...`), never an ImportError."""
    import sys

    from genbench.data import DataRequest, load_dataset
    from genbench.errors import GenbenchError

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))  # nothing measured yet
    monkeypatch.setitem(sys.modules, "skimage", None)  # `import skimage` raises ImportError
    with pytest.raises(GenbenchError, match=r'pip install "genbench\[morpho\]"'):
        load_dataset(DataRequest("synthetic-morpho"))
    assert not list(tmp_path.rglob("*.pt"))  # nothing half-measured was cached
