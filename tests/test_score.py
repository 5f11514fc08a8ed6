"""`genbench score`: outside samples scored in the runs' feature space, against their real
subsets, stored as an external run, and every bad input one line with nothing written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genbench
from genbench.cli import app
from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.metrics.features import fixed_subset
from genbench.presets import get_preset

pytestmark = pytest.mark.usefixtures("one_thread")
SMOKE = get_preset("smoke")
NUMBERS = ("fid", "fid_stderr", "kid", "kid_stderr", "precision", "recall", "density", "coverage",
           "inception_score", "mode_kl", "classes_covered", "copied_fraction", "copied_excess")


def _data():
    return load_dataset(DataRequest("synthetic")).subset_train(SMOKE.max_train)


def _floor_images(data) -> torch.Tensor:
    """The training images the floor compares with the reference, in the floor's order."""
    n = min(SMOKE.n_quality, len(data.train))
    return data.train.x[fixed_subset(len(data.train), n)]  # uint8 (n, 1, 28, 28)


def _cli(*args: str):
    return CliRunner().invoke(app, ["score", *args, "--device", "cpu"], env={"COLUMNS": "200"})


def _metrics(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def _save_pngs(images: torch.Tensor, folder: Path) -> Path:
    from PIL import Image

    folder.mkdir()
    for i, im in enumerate(images[:, 0].numpy()):
        Image.fromarray(im, mode="L").save(folder / f"{i:05d}.png")
    return folder


def test_training_images_score_the_floor_and_a_png_folder_scores_the_same(tmp_path):
    """The floor's own training images, given as uint8 .npz (N, H, W), land exactly on the
    real-versus-real floor; the same images as PNG files give identical numbers."""
    data = _data()
    images = _floor_images(data)
    np.savez(tmp_path / "train.npz", samples=images[:, 0].numpy())
    results = tmp_path / "results"
    out = _cli(str(tmp_path / "train.npz"), "--dataset", "synthetic", "--name", "real-train",
               "--preset", "smoke", "--results", str(results))
    assert out.exit_code == 0, out.output
    run = next(results.glob("synthetic/real-train/*"))
    npz = _metrics(run)
    assert npz["status"] == "finished"
    for key in ("fid", "precision", "recall", "density", "coverage"):
        assert npz[key] == pytest.approx(npz[f"floor_{key}"], rel=1e-9, abs=1e-12), key
    # KID: the same sets, other random subsets (the floor's seed is its own)
    assert abs(npz["kid"] - npz["floor_kid"]) <= 3 * npz["kid_stderr"]
    assert npz["inception_score"] == pytest.approx(npz["floor_inception_score"], rel=1e-9)
    assert not any(k.startswith(("test_", "parzen")) for k in npz)  # never a likelihood
    config = json.loads((run / "config.json").read_text())
    assert config["external"] is True and config["samples"]["layout"] == "NHW"
    import hashlib
    assert config["samples"]["sha256"] == hashlib.sha256((tmp_path / "train.npz").read_bytes()).hexdigest()
    assert config["command"].startswith("genbench score")
    assert (run / "samples.png").exists()

    pngs = _save_pngs(images, tmp_path / "pngs")
    folder = genbench.score(pngs, dataset="synthetic", name="real-train-png", preset="smoke",
                            results=results, device="cpu")
    assert {k: folder.metrics[k] for k in NUMBERS} == {k: npz[k] for k in NUMBERS}


def test_test_images_are_the_reference_itself(tmp_path):
    """The test images are the runs' reference: given as samples they score FID 0, below the
    floor, and every layout and dtype of the same images gives the same numbers."""
    data = _data()
    x = data.test.x  # uint8 (100, 1, 28, 28); smoke scores 256, so all of them once
    res = tmp_path / "r"
    common = dict(dataset="synthetic", preset="smoke", overrides={"n_quality": len(x)},
                  results=res, device="cpu")
    nchw = genbench.score(x, name="as-nchw", **common).metrics
    assert nchw["fid"] == pytest.approx(0, abs=1e-6) and nchw["fid"] <= nchw["floor_fid"]
    assert nchw["precision"] == 1 and nchw["recall"] == 1
    # fewer samples than the preset scores (256): scored at their count, with a warning
    from genbench.errors import GenbenchWarning

    with pytest.warns(GenbenchWarning, match="scoring all 100 samples.*n_quality=256"):
        fewer = genbench.score(x.permute(0, 2, 3, 1).numpy(), name="as-nhwc", dataset="synthetic",
                               preset="smoke", results=res, device="cpu")
    nhwc = fewer.metrics
    assert json.loads((fewer.run_dir / "config.json").read_text())["preset"]["n_quality"] == 100
    unit = genbench.score(x.float() / 255, name="as-float", **common).metrics
    for other in (nhwc, unit):
        assert {k: other[k] for k in NUMBERS} == {k: nchw[k] for k in NUMBERS}


def test_resize_only_when_asked_and_recorded(tmp_path):
    big = torch.nn.functional.interpolate(_floor_images(_data()).float() / 255, size=(32, 32),
                                          mode="bilinear")
    with pytest.raises(GenbenchError, match="32x32.*28x28.*--resize"):
        genbench.score(big, dataset="synthetic", name="big", preset="smoke",
                       results=tmp_path / "r", device="cpu")
    assert not (tmp_path / "r").exists()
    out = genbench.score(big, dataset="synthetic", name="big", preset="smoke", resize="bilinear",
                         results=tmp_path / "r", device="cpu")
    config = json.loads((out.run_dir / "config.json").read_text())
    how = config["samples"]["resize"]
    assert how.startswith("32x32 -> 28x28") and "bilinear" in how
    assert out.metrics["fid"] < 10 * out.metrics["floor_fid"] + 1  # a mild blur, near the floor


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    x = _floor_images(_data())
    nan = x.float() / 255
    nan[3, 0, 5, 5] = float("nan")
    cases = {
        "nan": (nan, "NaN"),
        "shape": (x[:, 0, 0], "shape"),
        "channels": (x.expand(-1, 3, -1, -1).contiguous(), "3 channels.*have 1"),
        "range": (x.float(), "outside \\[0, 1\\].*uint8"),
        "few": (x[:5], "5 samples.*at least 10"),
        "size": (x[:, :, :20, :20], "20x20.*--resize"),
    }
    args = {}
    for name, (value, match) in cases.items():
        path = tmp / f"{name}.pt"
        torch.save(value, path)
        args[name] = ([str(path)], match)
    (tmp / "empty").mkdir()
    args["empty folder"] = ([str(tmp / "empty")], "no PNG or JPEG")
    mixed = _save_pngs(x[:12], tmp / "mixed")
    from PIL import Image
    Image.fromarray(np.zeros((20, 20), np.uint8), mode="L").save(mixed / "zz.png")
    args["mixed sizes"] = ([str(mixed)], "mixes image sizes")
    args["model name"] = ([str(tmp / "few.pt"), "--name", "vae"], "is a genbench model")
    args["missing"] = ([str(tmp / "nope.npz")], "no samples at")
    return args


def test_every_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path):
    results = tmp_path / "results"
    for case, (args, match) in _bad_inputs(tmp_path).items():
        if "--name" not in args:
            args = [*args, "--name", "outside"]
        out = _cli(*args, "--dataset", "synthetic", "--preset", "smoke", "--results", str(results))
        assert out.exit_code == 2, (case, out.output)
        lines = out.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (case, out.output)
        import re
        assert re.search(match, lines[0]), (case, lines[0])
        assert not results.exists(), case


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A finished smoke VAE run with sample metrics, through `genbench run`."""
    from tests.run_folders import smoke_run_metrics

    results = tmp_path_factory.mktemp("score-run") / "results"
    metrics = smoke_run_metrics("vae", results, "elbo,quality,modes,memorization")
    return results, next(results.glob("synthetic/vae/*")), metrics


def _run_samples(run_dir: Path) -> torch.Tensor:
    """The very samples the run's evaluation scored: its blocks, from its generators."""
    from genbench.metrics.context import EvalContext
    from genbench.metrics.quality import SALT, SAMPLE_BLOCK, _block_generator, _sample_block
    from genbench.metrics.sampling import seed_from

    model, data = genbench.load_model(run_dir)
    cpu = torch.device("cpu")
    ctx = EvalContext(model=model, data=data, preset=SMOKE, seed=0, device=cpu, cache_dir=Path())
    seed = seed_from(ctx.generator(SALT))
    with torch.no_grad():
        return torch.cat([_sample_block(model, min(SAMPLE_BLOCK, SMOKE.n_quality - start),
                                        _block_generator(cpu, seed, b), data.train.y)
                          for b, start in enumerate(range(0, SMOKE.n_quality, SAMPLE_BLOCK))])


def test_samples_of_a_finished_run_score_as_the_run(smoke_run, tmp_path):
    """The run's own samples, written out and scored, give the run's numbers; a fresh draw
    from the same model gives FID and KID within their standard errors of them."""
    results, run_dir, run = smoke_run
    np.save(tmp_path / "same.npy", _run_samples(run_dir).numpy())
    same = genbench.score(tmp_path / "same.npy", dataset="synthetic", name="vae-outside",
                          preset="smoke", results=results, device="cpu").metrics
    for key in NUMBERS:
        assert same[key] == pytest.approx(run[key], rel=1e-6, abs=1e-9), key
    assert same["feature_space"] == run["feature_space"]
    model, _ = genbench.load_model(run_dir)
    fresh = genbench.score(genbench.sample(model, SMOKE.n_quality, seed=12345), dataset="synthetic",
                           name="vae-fresh", preset="smoke", results=results, device="cpu").metrics
    for key in ("fid", "kid"):
        se = math.hypot(run[f"{key}_stderr"], fresh[f"{key}_stderr"])  # of the difference
        assert abs(fresh[key] - run[key]) <= 2 * se, (key, fresh[key], run[key], se)


def test_the_report_shows_outside_samples_beside_trained_models_without_a_likelihood(smoke_run, tmp_path):
    from genbench.report import tables
    from genbench.report.build import add_tables
    from genbench.report.document import Document, to_markdown

    results, _, _ = smoke_run
    genbench.score(_floor_images(_data()), dataset="synthetic", name="elsewhere", preset="smoke",
                   results=results, device="cpu")
    (key, runs), = tables.groups(tables.load(results))  # the report's tables, without its plots
    doc = Document("report")
    add_tables(doc, key, runs, results)
    text = to_markdown(doc)
    quality = text[text.index("### Sample quality"):]
    quality = quality[:quality.index("\n\n", quality.index("| "))]
    assert "elsewhere (outside samples)" in quality and "| vae " in quality
    likelihood = text[text.index("### Likelihood"):]  # the VAE's ELBO: a likelihood table
    likelihood = likelihood[:likelihood.index("\n###", 4)] if "\n###" in likelihood[4:] else likelihood
    assert "| vae " in likelihood and "elsewhere" not in likelihood
    df = genbench.load_results(results)
    assert set(df[df.model == "elsewhere"].metric) >= {"fid", "kid", "precision"}
    assert not df[(df.model == "elsewhere") & df.nll.notna()].shape[0]


def test_the_readme_python_block_runs(tmp_path, monkeypatch):
    text = (Path(__file__).parents[1] / "README.md").read_text()
    after = text.split("<!-- readme-example: score-python", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    assert 'dataset="mnist-5k"' in code
    code = code.replace('dataset="mnist-5k"', 'dataset="synthetic", preset="smoke", device="cpu"')
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    outcome = namespace["outcome"]
    assert outcome.metrics["fid"] > outcome.metrics["floor_fid"]  # noise is far from digits
    assert outcome.run_dir.parts[-3:-1] == ("synthetic", "my-gan")
