"""The evaluator classifier: cached, reused, invalidated by the data variant, deterministic."""

from __future__ import annotations

import pytest
import torch

from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.metrics import features
from genbench.metrics.features import (
    get_extractor,
    inception_extractor,
    load_or_train_extractor,
    mean_images,
    shift_images,
)


@pytest.fixture
def count_training(monkeypatch):
    calls = []
    real = features.train_classifier

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(features, "train_classifier", counting)
    return calls


def test_cache_reused_and_invalidated_by_variant(tmp_path, count_training):
    data = load_dataset(DataRequest("synthetic")).subset_train(128)  # two steps an epoch
    first = load_or_train_extractor(data, epochs=1, cache_dir=tmp_path / "a")
    assert first.trained and len(count_training) == 1
    assert first.accuracy is not None and 0.0 <= first.accuracy <= 1.0
    again = load_or_train_extractor(data, epochs=1, cache_dir=tmp_path / "a")
    assert not again.trained and len(count_training) == 1  # loaded, not retrained
    assert again.feature_space == first.feature_space and again.accuracy == first.accuracy
    x = data.eval_x("test")
    assert torch.equal(first(x)[0], again(x)[0])
    # deterministic: a fresh cache trains the very same weights
    other = load_or_train_extractor(data, epochs=1, cache_dir=tmp_path / "b")
    assert other.trained and other.digest == first.digest
    # another data variant is another extractor
    continuous = load_dataset(DataRequest("synthetic", variant="continuous")).subset_train(128)
    cont = load_or_train_extractor(continuous, epochs=1, cache_dir=tmp_path / "a")
    assert cont.trained and len(count_training) == 3 and cont.path != first.path


def test_attribute_classifier_for_rgb(tmp_path):
    data = load_dataset(DataRequest("synthetic-rgb")).subset_train(64)
    ext = load_or_train_extractor(data, epochs=1, cache_dir=tmp_path)
    assert ext.task == "attributes" and ext.name == "cnn64-attributes"
    f, logits = ext(data.eval_x("test"), chunk=7)
    assert f.shape == (30, 256) and logits.shape == (30, 40)
    assert 0.0 <= ext.accuracy <= 1.0


def test_inception_needs_a_weights_file(tmp_path):
    with pytest.raises(GenbenchError, match="inception_weights=PATH"):
        inception_extractor(None)
    with pytest.raises(GenbenchError, match="inception_weights=PATH"):
        inception_extractor(str(tmp_path / "missing.pth"))
    bad = tmp_path / "bad.pth"
    torch.save({"w": torch.zeros(1)}, bad)
    with pytest.raises(GenbenchError, match="not a torchvision inception_v3"):
        inception_extractor(str(bad))
    data = load_dataset(DataRequest("synthetic"))
    with pytest.raises(GenbenchError, match="unknown feature_extractor"):
        get_extractor(data, kind="vgg", epochs=1, cache_dir=tmp_path)


def test_mean_images_and_shifts():
    x = torch.tensor([0, 255, 128], dtype=torch.uint8).view(1, 1, 1, 3)
    assert torch.allclose(mean_images(x, "dynamic"), torch.tensor([0.0, 1.0, 128 / 255]).view(1, 1, 1, 3))
    assert torch.allclose(mean_images(x, "continuous"), (x.float() + 0.5) / 256)
    img = torch.rand(5, 2, 6, 6)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(shift_images(img, 0, gen), img)
    shifted = shift_images(img, 2, gen)
    assert shifted.shape == img.shape
    # every output is a translate of its input: the centre 2x2 is inside the 6x6 input
    for i in range(5):
        centre = shifted[i, :, 2:4, 2:4]
        hits = [torch.equal(centre, img[i, :, 2 + dy : 4 + dy, 2 + dx : 4 + dx])
                for dy in range(-2, 3) for dx in range(-2, 3)]
        assert any(hits)


def test_features_command_prints_accuracy(tmp_path, monkeypatch, capsys):
    from genbench.commands import features_command

    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path))
    features_command("synthetic", preset="smoke", device="cpu")
    out = capsys.readouterr().out
    assert "cnn28-classes" in out and "%" in out and "trained" in out
    features_command("synthetic", preset="smoke", device="cpu")
    assert "loaded from cache" in capsys.readouterr().out
