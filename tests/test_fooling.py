"""The fooling generator (Nguyen et al. 2015): images optimized against genbench's own evaluator.

It must game the very network the sample metrics use (the same cache entry): every image is
>99% one class under it, so the classifier-based Inception Score beats the real-versus-real
floor and every class is covered, while FID, read from the same network's features, is worse
than a trained model's. Both encodings reach the target; sampling draws from the bank,
reproducibly; training resumes bit for bit; the report marks the row and says what it fooled.

The smoke evaluator (one epoch on a few hundred images) is barely trained, so its logits cannot
reach 99% within [0, 1] images: these runs ask for ``feature_epochs=5``, which every run of the
module shares (one evaluator, as in a real comparison).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genbench import api
from genbench.contract import capabilities, optimizer_dict
from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError, GenbenchWarning
from genbench.metrics.features import default_cache_dir, find_extractor, preset_extractor
from genbench.plugins import load_plugins
from genbench.presets import PRESETS
from genbench.registry import get_model
from genbench.settings import resolve

pytestmark = pytest.mark.usefixtures("one_thread")
SETTINGS = {"feature_epochs": 5}  # a trained evaluator (see the module's docstring)
METRICS = "quality,modes"


def _run(results: Path, model: str, **overrides: object) -> dict:
    (out,) = api.run(model, dataset="synthetic", preset="smoke", overrides={**SETTINGS, **overrides},
                     results=results, metrics=METRICS, quiet=True, device="cpu")
    assert out.status == "finished", out.metrics
    return {**out.metrics, "run_dir": out.run_dir}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """A fooling run (direct encoding) and a VAE, the cheapest trained model, in one results
    folder. Module-scoped fixtures start before the conftest's per-test settings, so the same
    private cache and data folder are set here."""
    base = tmp_path_factory.getbasetemp()
    mp = pytest.MonkeyPatch()
    mp.setenv("GENBENCH_CACHE", str(base / "cache"))
    mp.setenv("GENBENCH_DATA", str(base / "data"))
    mp.setenv("GENBENCH_OFFLINE", "1")
    results = tmp_path_factory.mktemp("results")
    try:
        yield {"results": results, "fooling": _run(results, "fooling"), "vae": _run(results, "vae")}
    finally:
        mp.undo()


def _model_and_evaluator(encoding: str, **overrides: object):
    load_plugins()
    cls = get_model("fooling").cls
    sets = {k: str(v) for k, v in {**SETTINGS, **overrides}.items()}
    config, preset = resolve(cls.Config, cls.presets, PRESETS["smoke"], {"encoding": encoding, **sets})
    data = load_dataset(DataRequest("synthetic")).subset_train(preset.max_train)
    torch.manual_seed(0)
    model = cls(config, data.info)
    return model, preset_extractor(data, preset, default_cache_dir()), data


def _optimize(model, extractor, steps: int) -> None:
    model.on_evaluator(extractor)
    opts = optimizer_dict(model.configure_optimizers())
    for _ in range(steps):
        model.training_step(None, opts)


def test_every_image_is_over_99_percent_its_class_to_the_network_that_measured_the_run(runs) -> None:
    """The very classifier behind the run's IS (found by the weight hash the run recorded) is
    >99% sure of each bank image's class, for every class, and the history says so."""
    run = runs["fooling"]
    model, data = api.load_model(run["run_dir"])
    ext = find_extractor(data, run["feature_space"], default_cache_dir())
    assert ext is not None, "the run was measured by a classifier the fooling model did not see"
    with torch.no_grad():
        _, logits = ext(model.render())
    p = logits.softmax(1).gather(1, model.targets[:, None])[:, 0]
    assert p.shape == (20,) and float(p.min()) > 0.99
    assert set(model.targets.tolist()) == set(range(10))
    assert bool(model.done)  # every image got there within the budget, and it stopped
    head = (Path(run["run_dir"]) / "history.csv").read_text().splitlines()[0].split(",")
    assert {"confidence", "min_confidence", "at_target"} <= set(head)


def test_it_beats_the_floor_on_the_classifier_metrics_and_loses_on_fid(runs) -> None:
    """IS above real data's, every class covered, mode KL at most the floor's; FID worse than a
    trained VAE's (one epoch), precision and density no better than real images'."""
    fool, vae = runs["fooling"], runs["vae"]
    assert fool["feature_space"] == vae["feature_space"]  # one evaluator for both
    assert fool["inception_score"] > fool["floor_inception_score"] > 2
    assert fool["inception_score"] > vae["inception_score"]
    assert fool["classes_covered"] == 10 and fool["mode_kl"] < 0.05
    assert fool["fid"] > 3 * vae["fid"] and fool["fid"] > 100 * fool["floor_fid"]
    assert fool["precision"] < fool["floor_precision"] and fool["density"] < fool["floor_density"]


def test_the_cppn_encoding_reaches_the_target_with_smoother_images_than_pixels() -> None:
    """The indirect encoding fools the classifier too, and its images are the CPPN's smooth
    patterns: neighbouring pixels differ far less than in the direct encoding's images."""
    cppn, ext, _ = _model_and_evaluator("cppn")
    _optimize(cppn, ext, 300)
    direct, ext, _ = _model_and_evaluator("direct")
    _optimize(direct, ext, 100)
    assert bool(cppn.done) and bool(direct.done)
    with torch.no_grad():
        for model in (cppn, direct):
            _, logits = ext(model.render())
            assert float(logits.softmax(1).gather(1, model.targets[:, None]).min()) > 0.99
        tv = [float((m.render().diff(dim=-1).abs()).mean()) for m in (cppn, direct)]
    assert tv[0] < 0.5 * tv[1], tv


def test_samples_come_from_the_bank_every_class_alike_and_reproducibly() -> None:
    model, _, data = _model_and_evaluator("direct")
    with torch.no_grad():
        bank = model.render().flatten(1)
        x = model.sample(45, generator=torch.Generator().manual_seed(3))
        again = model.sample(45, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x, again) and x.shape == (45, *data.info.shape)
    same = (x.flatten(1)[:, None] == bank[None]).all(-1)  # (45, 20): which bank image it is
    assert bool((same.sum(1) == 1).all())  # each sample is exactly one bank image
    rows = same.float().argmax(1)
    counts = torch.bincount(model.targets[rows], minlength=10)
    assert int(counts.max() - counts.min()) <= 1  # classes cycle: 45 = 4 or 5 of each
    # no density, no decoder: the contract says n/a for every likelihood, not an error
    assert capabilities(model) == {"train", "sample"}
    import genbench.metrics  # noqa: F401  (registers the metrics)
    from genbench.contract import missing_reason
    from genbench.registry import METRICS

    for name in ("elbo", "iwae", "ais", "exact", "iwae_shared"):
        assert missing_reason(METRICS[name].needs, capabilities(model)).startswith("no "), name
    assert missing_reason(METRICS["quality"].needs, capabilities(model)) is None


def test_optimizing_resumes_bit_for_bit_from_its_state() -> None:
    """The bank, Adam's moments and the done flag are the state: 6 + 6 steps through a saved
    state dict end where 12 uninterrupted steps do."""
    whole, ext, _ = _model_and_evaluator("cppn")
    _optimize(whole, ext, 12)
    first, ext, _ = _model_and_evaluator("cppn")
    first.on_evaluator(ext)
    opts = optimizer_dict(first.configure_optimizers())
    for _ in range(6):
        first.training_step(None, opts)
    saved = {"model": first.state_dict(), "opt": opts["optimizer"].state_dict()}
    torch.manual_seed(99)  # another start: everything must come from the state
    second, ext, _ = _model_and_evaluator("cppn")
    second.load_state_dict(saved["model"])
    second.on_evaluator(ext)
    opts = optimizer_dict(second.configure_optimizers())
    opts["optimizer"].load_state_dict(saved["opt"])
    for _ in range(6):
        second.training_step(None, opts)
    for (name, a), b in zip(whole.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_it_refuses_what_it_cannot_fool_in_one_line() -> None:
    load_plugins()
    cls = get_model("fooling").cls
    rgb = load_dataset(DataRequest("synthetic-rgb"))  # attributes, no classes
    with pytest.raises(GenbenchError, match="has none: run it on a dataset with class labels"):
        cls(cls.Config(), rgb.info)
    model, _, _ = _model_and_evaluator("direct")
    with pytest.raises(GenbenchError, match="on_evaluator"):
        model.training_step(None, optimizer_dict(model.configure_optimizers()))
    _optimize(model, _model_and_evaluator("direct")[1], 1)  # one step: far from 99%
    with pytest.warns(GenbenchWarning, match="20 of 20 images are below 99% after the step budget"):
        model.on_train_end(torch.zeros(0))


def test_the_report_marks_the_row_and_says_what_it_fooled(runs, tmp_path) -> None:
    from genbench.report.build import build_report

    build_report(runs["results"], tmp_path, galleries=False)
    text = (tmp_path / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| fooling — reference row"))
    assert "adversarial: games the classifier" in row and "⚠ gamed" in row
    assert "**" not in row  # a reference row is never bold
    said = text[text.index("## What the metrics say, and what they do not"):]
    said = next(line for line in said.splitlines() if line.startswith("On synthetic"))
    fooled, held = said.split(" fools ", 1)[1].split(", and does not fool ")
    fool = runs["fooling"]
    assert f"IS {fool['inception_score']:.3g}" in fooled and "classes covered 10" in fooled
    assert all(f"{m} " in held for m in ("FID", "precision", "density"))
