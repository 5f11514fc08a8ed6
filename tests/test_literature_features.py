"""The literature's feature spaces through the libraries that define them: torch-fidelity's
FID Inception network, with locally made random weights (nothing is downloaded): genbench's
FID and KID equal torch-fidelity's own ``calculate_metrics`` on the same images."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import torch
from typer.testing import CliRunner

from genbench.cli import app
from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.metrics.features import FIDELITY_WEIGHTS, inception_fid_extractor
from genbench.metrics.frechet import fid_features_to_statistics, fid_statistics_to_metric
from genbench.metrics.kid import kid_features_to_metric

fidelity = pytest.importorskip("torch_fidelity")  # the `literature` extra (in dev)
pytestmark = pytest.mark.usefixtures("one_thread")
N = 10  # images per set: the network is a 299x299 InceptionV3, so few


def random_fid_inception(path: Path) -> Path:
    """torch-fidelity's network with PyTorch's random initialization (its constructor always
    loads weights, so loading is bypassed once), convolutions scaled so features are O(1)."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    torch.manual_seed(0)
    with mock.patch.object(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None), \
            mock.patch.object(fe, "load_state_dict_from_url", lambda *args, **kwargs: None):
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["64"])
    torch.save({k: v * 3 if k.endswith("conv.weight") else v for k, v in net.state_dict().items()},
               path)
    return path


class _Images(torch.utils.data.Dataset):
    """uint8 (3, H, W) images, as torch-fidelity reads its inputs."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.expand(-1, 3, -1, -1).contiguous()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def test_fid_and_kid_equal_torch_fidelity_with_the_same_weights(tmp_path):
    weights = random_fid_inception(tmp_path / "random-inception.pth")
    data = load_dataset(DataRequest("synthetic"))
    real, fake = data.test.x[:N], 255 - data.train.x[:N]  # inverted digits: far from real
    ext = inception_fid_extractor(str(weights), layer="64", logits=False)
    # genbench's path: [0, 1] images through the extractor, then its own FID and KID
    f_fake, f_real = ext(fake.float() / 255)[0], ext(real.float() / 255)[0]
    fid = fid_statistics_to_metric(fid_features_to_statistics(f_fake), fid_features_to_statistics(f_real))
    # subsets as large as the sets: every subset is the whole set, so the subset draws
    # (torch's here, numpy's there) cannot differ
    kid, _ = kid_features_to_metric(f_fake, f_real, subsets=2, subset_size=N,
                                    generator=torch.Generator().manual_seed(0))
    theirs = fidelity.calculate_metrics(
        input1=_Images(fake), input2=_Images(real), cuda=False, fid=True, kid=True,
        kid_subsets=2, kid_subset_size=N, feature_layer_fid="64", feature_layer_kid="64",
        feature_extractor_weights_path=str(weights), verbose=False, cache=False,
        save_cpu_ram=True)
    assert fid > 0.1  # a real difference, so 1e-6 is a real agreement
    # relative 1e-6: torch-fidelity keeps features (and KID) in float32, whose ulp at 74 is 8e-6
    assert fid == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    assert kid == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    import hashlib

    h = hashlib.sha1()  # the feature space names the network and the weights file's content
    for key, value in sorted(torch.load(weights, weights_only=True).items()):
        h.update(key.encode())
        h.update(value.contiguous().numpy().tobytes())
    assert ext.feature_space == f"inception-fid-64:{h.hexdigest()[:12]}"


def test_without_weights_one_line_says_what_to_fetch_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(GenbenchError, match=f"download https://.*{FIDELITY_WEIGHTS} into "
                                            f".*{tmp_path}/torch/hub/checkpoints/ or pass --set "
                                            "feature_weights=PATH"):
        inception_fid_extractor(None)
    with pytest.raises(GenbenchError, match="no such file"):
        inception_fid_extractor(str(tmp_path / "missing.pth"))
    torch.save(data := load_dataset(DataRequest("synthetic")).test.x[:20], tmp_path / "s.pt")
    assert data.shape[0] == 20
    out = CliRunner().invoke(app, ["score", str(tmp_path / "s.pt"), "--dataset", "synthetic",
                                   "--name", "x", "--preset", "smoke", "--set", "n_quality=20",
                                   "--set", "feature_extractor=inception-fid", "--results",
                                   str(tmp_path / "r"), "--device", "cpu"])
    assert out.exit_code == 2 and "feature_weights=PATH" in out.output, out.output
    assert len(out.output.strip().splitlines()) == 1 and not (tmp_path / "r").exists()


def test_dinov2_through_timm_with_a_local_weights_file(tmp_path, monkeypatch):
    """FD-DINOv2's features are timm's own: the file's weights (the feature space names their
    hash), the CLS token of images resized to 224 (bicubic) with ImageNet mean/std."""
    timm = pytest.importorskip("timm")
    from genbench.metrics.features import dinov2_extractor

    torch.manual_seed(0)
    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=224)
    torch.save(net.state_dict(), tmp_path / "dinov2.pth")
    ext = dinov2_extractor(str(tmp_path / "dinov2.pth"), arch="vit_small_patch14_dinov2")
    x = load_dataset(DataRequest("synthetic")).test.x[:3].float() / 255
    ours = ext(x)[0]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    rgb = torch.nn.functional.interpolate(x.repeat(1, 3, 1, 1), size=(224, 224), mode="bicubic",
                                          antialias=True)
    with torch.no_grad():
        theirs = net.eval().forward_head(net.forward_features((rgb - mean) / std), pre_logits=True)
    assert ours.shape == (3, 384)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    assert ext.feature_space.startswith("dinov2-vit_small_patch14_dinov2:")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(GenbenchError, match="huggingface.co/timm/vit_large_patch14_dinov2.lvd142m "
                                            "and pass --set feature_weights=PATH"):
        dinov2_extractor(None)


def test_inception_score_equals_torch_fidelity_isc_with_the_same_weights(tmp_path):
    """In the inception-fid space the Inception Score is torch-fidelity's own: its 1008-way
    logits_unbiased, 10 shuffled splits; equal to ``calculate_metrics(isc=True)``."""
    from genbench.metrics.modes import inception_score

    path = random_fid_inception(tmp_path / "random-inception.pth")
    state = torch.load(path, weights_only=True)
    state["fc.weight"] = state["fc.weight"] / 10  # logits of O(1) spread (x 1 they overflow softmax)
    torch.save(state, path)
    n = 20  # two images per split: a split of one scores exactly 1
    data = load_dataset(DataRequest("synthetic"))
    x = torch.cat([data.test.x[:n // 2], 255 - data.train.x[:n // 2]])
    ext = inception_fid_extractor(str(path))
    logits = ext(x.float() / 255)[1]
    assert logits.shape == (n, 1008)
    ours, stderr = ext.score_logits(logits)
    theirs = fidelity.calculate_metrics(
        input1=_Images(x), cuda=False, isc=True, feature_extractor_weights_path=str(path),
        verbose=False, cache=False, save_cpu_ram=True)
    assert ours > 1.01  # not the trivial 1 (at most 2 with two images a split)
    assert ours == pytest.approx(theirs["inception_score_mean"], rel=1e-6)
    assert stderr * 3 == pytest.approx(theirs["inception_score_std"], rel=1e-6)  # sqrt(10 - 1)
    # the shuffled splits' mean, not genbench's own all-sample score (the classifier space's)
    assert abs(inception_score(logits)[0] - ours) > 1e-3


def test_outside_samples_in_inception_fid_space_get_the_librarys_inception_score(tmp_path, monkeypatch):
    """`genbench score --set feature_extractor=inception-fid` records the library's IS of the
    samples' logits (and of the floor's training images) in that feature space; mode KL and
    classes covered are n/a with the reason. A small random network stands in for the 299x299
    Inception so the whole path runs in seconds."""
    import genbench
    from genbench.metrics import features
    from genbench.metrics.features import EvaluatorCNN, Extractor, fidelity_inception_score

    torch.manual_seed(0)
    net = EvaluatorCNN((1, 28, 28), 1008).eval()
    with torch.no_grad():
        net.head.weight.mul_(30)
    ext = Extractor("inception-fid-2048", net, "f" * 40, "imagenet", preprocessing="stand-in",
                    score_logits=fidelity_inception_score)
    monkeypatch.setattr(features, "get_extractor", lambda *a, **k: ext)
    images = load_dataset(DataRequest("synthetic")).test.x[:100]
    out = genbench.score(images, dataset="synthetic", name="their-gan", preset="smoke",
                         overrides={"n_quality": "100", "feature_extractor": "inception-fid"},
                         results=tmp_path / "r", device="cpu")
    m = out.metrics
    want, want_err = fidelity_inception_score(ext(images.float() / 255)[1])
    assert m["inception_score"] == pytest.approx(want, rel=1e-12) and want > 1.02
    assert m["inception_score_stderr"] == pytest.approx(want_err, rel=1e-12)
    assert m["floor_inception_score"] > 1 and m["feature_space"] == "inception-fid-2048:ffffffffffff"
    assert "mode_kl" not in m and "classes_covered" not in m
    assert "ImageNet" in m["not_applicable"]["mode_kl"] and "classes_covered" in m["not_applicable"]
    assert "inception_score" not in m["not_applicable"]
    # the same images in the default (classifier) space: its own IS, in its own report table
    monkeypatch.undo()
    own = genbench.score(images, dataset="synthetic", name="their-gan-own", preset="smoke",
                         overrides={"n_quality": "100"}, results=tmp_path / "r", device="cpu").metrics
    assert own["feature_space"].startswith("cnn28-classes:") and own["inception_score"] > 1
    from genbench.report import tables
    from genbench.report.build import add_tables
    from genbench.report.document import Document, to_markdown

    (key, runs), = tables.groups(tables.load(tmp_path / "r"))
    doc = Document("report")
    add_tables(doc, key, runs, tmp_path / "r")
    text = to_markdown(doc)
    for space, label, value in ((m["feature_space"], "their-gan", m["inception_score"]),
                                (own["feature_space"], "their-gan-own", own["inception_score"])):
        table = text[text.index(f"### Sample quality — feature space `{space}`"):]
        table = table[:table.index("\n\n", table.index("| "))]  # one feature space's table
        rows = [line.split("|")[1:-1] for line in table.splitlines() if line.startswith("| ")]
        column = [c.strip() for c in rows[0]].index("IS ↑")
        (row,) = [r for r in rows if r[0].strip().startswith("their-gan")]  # one space's row only
        assert row[0].strip() == f"{label} (outside samples)"
        assert float(row[column].split()[0]) == pytest.approx(value, rel=1e-3)
        assert ("evaluator classifier genbench trains" in table) == space.startswith("cnn")
