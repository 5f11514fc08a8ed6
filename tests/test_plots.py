"""The report's plots know what its tables know: every model with any log-likelihood on the
quality plane (own, shared-family or exact, marked), uncertainty on every point, a palette
that stays distinct, flags counted, wide tables that scroll."""

from __future__ import annotations

import json
from pathlib import Path

from genbench.report import plots, tables

SPACE = "cnn-aaaa"


def fake(root: Path, model: str, seed: int, metrics: dict) -> None:
    folder = root / "mnist-5k" / model / f"quick-dynamic-seed{seed}-abcdef"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model": model, "seed": seed, "model_config": {}, "preset": {"name": "quick"},
        "dataset": {"name": "mnist-5k", "variant": "dynamic"}}))
    (folder / "metrics.json").write_text(json.dumps({"status": "finished", "feature_space": SPACE,
                                                     **metrics}))


def survey(root: Path) -> None:
    """A VAE (own AIS), a GAN (only the shared family's AIS), a PixelCNN (exact), with FID,
    precision and recall, and the recorded floor."""
    floor = {"floor_precision": 0.93, "floor_recall": 0.9, "floor_fid": 0.7}
    for seed in (0, 1):
        fake(root, "vae", seed, {"test_ais": -100.0 - seed, "test_ais_stderr": 1.0, "ais_converged": seed,
                                 "fid": 200.0 + seed, "fid_stderr": 3.0, "precision": 0.2,
                                 "recall": 0.1 + 0.01 * seed, **floor})
        fake(root, "gan", seed, {"test_ais_shared": -170.0 + seed, "test_ais_shared_stderr": 5.0,
                                 "fid": 90.0 - seed, "fid_stderr": 2.0, "precision": 0.8,
                                 "recall": 0.04, **floor})
    fake(root, "pixelcnn", 0, {"test_exact": -97.0, "test_exact_stderr": 0.9, "fid": 227.0,
                               "fid_stderr": 5.0, "precision": 0.04, "recall": 0.47, **floor})


def test_the_quality_plane_holds_every_model_with_a_likelihood_marked_by_kind(tmp_path: Path) -> None:
    survey(tmp_path)
    runs = tables.load(tmp_path)
    assert plots.nll_sources(runs) == {"vae": ("test_ais", "own AIS"),
                                       "gan": ("test_ais_shared", "shared-family AIS"),
                                       "pixelcnn": ("test_exact", "exact")}
    path, caption = plots.quality_vs_nll(runs, tmp_path / "q.png", SPACE)
    assert path.exists() and "3 in all" in caption and "shared-family AIS" in caption
    assert "exact" in caption and "GANs win" not in caption
    # the VAE's AIS did not converge on seed 0 and has no certificate: drawn hollow, said so
    assert "Hollow: an AIS that BDMC did not certify (vae)" in caption
    assert plots.precision_recall(runs, tmp_path / "pr.png", SPACE).exists()
    assert plots.likelihood_estimators(runs, tmp_path / "ll.png").exists()
    assert plots.metric_panels(runs, ["fid", "test_ais"], tmp_path / "m.png").exists()


def test_one_seed_has_an_error_bar_from_its_estimator(tmp_path: Path) -> None:
    survey(tmp_path)
    runs = tables.load(tmp_path)
    pix = tables.stats(runs[runs["model"] == "pixelcnn"], "test_exact")
    assert tables.mean_stderr(pix) == 0.9  # one seed: its estimator's s.e.
    vae = tables.stats(runs[runs["model"] == "vae"], "fid")  # spread 0.71 < s.e. 3: 3 / sqrt 2
    assert abs(tables.mean_stderr(vae) - 3.0 / 2**0.5) < 1e-9


def test_palette_is_distinct_for_twelve_models_and_more() -> None:
    for n in (11, 12, 20, 25):
        colours = list(plots.palette([f"m{i}" for i in range(n)]).values())
        assert len({tuple(round(c, 3) for c in col) for col in colours}) == n


def test_flags_are_counted_and_wide_tables_scroll(tmp_path: Path) -> None:
    from genbench.report.document import Table, _html_table

    survey(tmp_path)
    runs = tables.load(tmp_path)
    table = tables.comparison_table(runs, ["ais_converged"], rank=False)
    assert {r[0].text: r[2].text for r in table.rows}["vae"] == "1 of 2"
    html = _html_table(Table(["a"] * 21, [], "wide"))
    assert '<div class="scroll">' in html


def test_paired_plot_compares_the_top_two_on_the_same_images(tmp_path: Path) -> None:
    import torch

    gen = torch.Generator().manual_seed(0)
    base = -100 + 20 * torch.randn(40, generator=gen, dtype=torch.float64)
    for model, shift in (("vae", 0.0), ("draw", -3.0), ("ae", -9.0)):
        values = (base + shift + 0.2 * torch.randn(40, generator=gen, dtype=torch.float64)).tolist()
        fake(tmp_path, model, 0, {"test_iwae": sum(values) / 40, "test_iwae_stderr": 3.0})
        folder = tmp_path / "mnist-5k" / model / "quick-dynamic-seed0-abcdef"
        (folder / "per_image.json").write_text(json.dumps(
            {"test_iwae": {"indices": list(range(40)), "values": values}}))
    runs = tables.load(tmp_path)
    path, caption = plots.paired_images(runs, tmp_path / "paired.png")
    assert path.exists() and "A = vae against B = draw on the same 40 test images" in caption
    diff = tables.difference(runs, "test_iwae", "vae", "draw")
    assert diff.paired_images == 40 and diff.text() in caption


def test_one_picture_across_models_reconstructs_the_same_test_images(tmp_path: Path) -> None:
    """A VAE and a GAN: the reconstruction grid has the test images and the VAE's row (the
    GAN has no encoder); the sample grid has a row for each."""
    from PIL import Image
    from run_folders import make_run

    from genbench.galleries import render_across

    vae = make_run(tmp_path / "synthetic" / "vae" / "smoke-dynamic-seed0-aaaaaa", "vae", steps=3)
    ae = make_run(tmp_path / "synthetic" / "ae" / "smoke-dynamic-seed0-aaaaaa", "ae", steps=3)
    gan = make_run(tmp_path / "synthetic" / "gan" / "smoke-dynamic-seed0-aaaaaa", "gan",
                   latent_dim=None, steps=3)
    made = render_across({"vae": vae, "ae": ae, "gan": gan, "broken": tmp_path / "nowhere"},
                         tmp_path / "out", n=4)
    assert made.rows == {"reconstructions": ["test images", "vae", "ae"], "samples": ["vae", "ae", "gan"]}
    assert "broken" in made.skipped
    tile = 28 + 2  # make_grid's padding
    assert Image.open(made.images["reconstructions"]).size == (4 * tile + 2, 3 * tile + 2)
    assert Image.open(made.images["samples"]).size == (4 * tile + 2, 3 * tile + 2)


def test_repeated_headings_get_distinct_ids_as_on_github(tmp_path) -> None:
    """Every group has its "Plots": the HTML gives each heading its own id (GitHub's -1, -2),
    and the contents link the ids the headings carry."""
    import re

    from genbench.report.document import Document, Heading, contents, to_html

    doc = Document("r")
    doc.add(Heading(2, "mnist · dynamic"), Heading(3, "Plots"), Heading(2, "mnist · continuous"),
            Heading(3, "Plots"), Heading(3, "Plots"))
    doc.add(contents(doc))
    page = to_html(doc, tmp_path)
    ids = re.findall(r'<h\d id="([^"]+)"', page)
    assert ids == ["mnist--dynamic", "plots", "mnist--continuous", "plots-1", "plots-2"]
    assert all(f'href="#{i}"' in page for i in ("mnist--dynamic", "mnist--continuous"))
