"""The report from small fake result folders: the right means, stds and seed counts, failed
runs with reasons, best values marked in the metric's direction, presets never mixed, plots
written, and an HTML page that headless Chromium renders with every image loaded."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image
from typer.testing import CliRunner

from genbench.report import tables

VAE_ELBO = [-100.0, -102.0, -104.0]  # mean -102, std 2
VAE_FID, AE_FID, GAN_FID = [10.0, 12.0, 14.0], [5.0, 7.0], [20.0]


def write_run(root: Path, model: str, seed: int, metrics: dict, *, preset: str = "quick",
              dataset: str = "synthetic", variant: str = "dynamic", history: str | None = None,
              latent_dim: int = 8) -> Path:
    folder = root / dataset / model / f"{preset}-{variant}-seed{seed}-abc123"
    folder.mkdir(parents=True)
    command = f"genbench run {model} --dataset {dataset} --preset {preset}" + (" --seed 1" * (model == "ae"))
    (folder / "config.json").write_text(json.dumps({
        "model": model, "model_config": {"latent_dim": latent_dim}, "seed": seed,
        "preset": {"name": preset}, "dataset": {"name": dataset, "variant": variant}, "command": command}))
    (folder / "metrics.json").write_text(json.dumps({"status": "finished", **metrics}))
    if history:
        (folder / "history.csv").write_text(history)
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    curves = "epoch,seconds,loss,recon,kl\n1,0.1,110,-100,10\n2,0.1,105,-96,9\n"
    for seed, (elbo, fid) in enumerate(zip(VAE_ELBO, VAE_FID, strict=True)):
        write_run(root, "vae", seed, {"test_elbo": elbo, "test_elbo_stderr": 0.5, "fid": fid,
                                      "floor_fid": 1.5, "feature_space": "cnn-aaaa"}, history=curves)
    for seed, fid in enumerate(AE_FID):
        write_run(root, "ae", seed, {"fid": fid, "recon_bce": 60.0 + seed, "feature_space": "cnn-aaaa",
                                     "not_applicable": {"test_elbo": "point-mass encoder"}})
    gan_curves = "epoch,seconds,d_loss,g_loss\n1,0.1,1.3,0.8\n2,0.1,1.2,0.9\n"
    write_run(root, "gan", 0, {"fid": GAN_FID[0], "fid_stderr": 0.5, "feature_space": "cnn-aaaa",
                               "not_applicable": {"test_elbo": "no encoder"}}, history=gan_curves)
    gan0 = root / "synthetic" / "gan" / "quick-dynamic-seed0-abc123"
    for epoch in range(1, 11):  # the runner's fixed-noise grids (8 x 8 tiles of 28 px)
        (gan0 / "samples").mkdir(exist_ok=True)
        save_image(make_grid(torch.rand(64, 1, 28, 28), nrow=8, padding=2), gan0 / "samples" /
                   f"epoch_{epoch:03d}.png")
    failed = write_run(root, "gan", 1, {}, history=gan_curves)
    shutil.copytree(gan0 / "samples", failed / "samples")
    (failed / "metrics.json").write_text(json.dumps({"status": "failed",
                                                      "reason": "diverged: NaN in the D loss"}))
    # another preset (a run with a checkpoint, for the galleries) and a sample-quality number in
    # another feature space: never mixed in
    from run_folders import make_vae_run

    smoke = make_vae_run(root / "synthetic" / "vae" / "smoke-dynamic-seed0-ckpt", steps=5)
    (smoke / "metrics.json").write_text(json.dumps({"status": "finished", "test_elbo": -300.0}))
    write_run(root, "dcgan", 0, {"fid": 99.0, "feature_space": "inception-bbbb"})
    # a run that followed a published protocol
    write_run(root, "vae", 0, {"test_iwae": -87.0, "test_iwae_stderr": 0.1}, preset="paper",
              dataset="mnist", latent_dim=50)
    return root


@pytest.fixture(scope="module")
def report(results: Path, tmp_path_factory: pytest.TempPathFactory):
    from genbench.report.build import build_report

    out = tmp_path_factory.mktemp("report")
    return build_report(results, out)


def md_tables(text: str) -> list[list[list[str]]]:
    """Every markdown table as rows of cells (header first)."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(set(c) <= {"-", " "} for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def section(text: str, title: str) -> str:
    start = text.index(title)
    nxt = text.find("\n## ", start + 1)
    return text[start: nxt if nxt > 0 else None]


def table_with(text: str, column: str) -> dict[str, dict[str, str]]:
    """The first table with ``column``: model -> {column -> cell}."""
    for t in md_tables(text):
        if column in t[0]:
            return {row[0]: dict(zip(t[0], row, strict=True)) for row in t[1:]}
    raise AssertionError(f"no table with column {column!r}")


def test_table_has_means_stds_and_seed_counts(report) -> None:
    text = (report.out / "report.md").read_text()
    quick = section(text, "## synthetic · dynamic · preset quick")
    elbo = table_with(quick, "ELBO ↑")
    assert elbo["vae"]["seeds"] == "3"
    assert elbo["vae"]["ELBO ↑"] == "-102.0 ± 2.0 (s.e. 0.50)"  # alone in its column: not marked
    assert elbo["ae"]["ELBO ↑"] == "n/a — point-mass encoder"
    assert elbo["gan"]["ELBO ↑"] == "n/a — no encoder" and elbo["gan"]["seeds"] == "1"
    assert "-300" not in quick  # the smoke preset has its own section
    smoke = section(text, "## synthetic · dynamic · preset smoke")
    assert table_with(smoke, "ELBO ↑")["vae"]["ELBO ↑"].startswith("-300")


def test_best_is_marked_in_the_metric_direction(report) -> None:
    quick = section((report.out / "report.md").read_text(), "## synthetic · dynamic · preset quick")
    fid = table_with(quick, "FID ↓")
    assert fid["ae"]["FID ↓"] == f"**{np.mean(AE_FID):.1f} ± {np.std(AE_FID, ddof=1):.1f}**"
    assert not fid["vae"]["FID ↓"].startswith("**") and not fid["gan"]["FID ↓"].startswith("**")
    assert fid["real vs real (floor)"]["FID ↓"] == "1.500"
    # another feature space gets its own table: dcgan's 99 never shares a column with the others
    assert "dcgan" not in fid
    assert "feature space `inception-bbbb`" in quick and "feature space `cnn-aaaa`" in quick
    # bold and named only beyond the uncertainty: here the seed spread (6.0 apart, s.e. 1.5)
    assert "- Lowest FID: **ae** at 6.0 ± 1.4; vae is 6.0 ± 1.5 above it. The real-vs-real floor is 1.500." \
        in quick
    assert tables.best_models({"a": 1.0, "b": 2.0}, "fid") == {"a"}
    assert tables.best_models({"a": 1.0, "b": 2.0}, "test_elbo") == {"b"}


def test_sanity_notes_flag_bounds_out_of_order() -> None:
    import pandas as pd

    df = pd.DataFrame({"model": ["vae", "gan"], "status": ["finished"] * 2, "conditional": [False] * 2,
                       "test_iwae": [-90.0, None], "test_ais": [-95.0, -300.0], "bdmc_gap": [0.2, 4.0]})
    notes = tables.sanity_notes(df)
    assert len(notes) == 2
    assert notes[0].startswith("vae: AIS (-95) is below the IWAE bound (-90)")
    assert notes[1].startswith("gan: BDMC gap 4")
    # the paired difference on AIS's own images overrides the unpaired headline means
    df["ais_minus_iwae"], df["ais_minus_iwae_stderr"] = [1.5, None], [0.5, None]
    assert [n[:4] for n in tables.sanity_notes(df)] == ["gan:"]
    df["ais_minus_iwae"] = [-3.0, None]
    assert tables.sanity_notes(df)[0].startswith("vae: on the same test images AIS is 3 nats below")


def test_failed_runs_are_listed_with_reasons(report) -> None:
    text = (report.out / "report.md").read_text()
    fails = table_with(section(text, "## synthetic · dynamic · preset quick"), "reason")
    assert fails["gan"]["status"] == "failed"
    assert fails["gan"]["reason"] == "diverged: NaN in the D loss"
    assert report.failed == 1 and report.runs == 10
    strip = report.out / "img" / "synthetic-dynamic-quick" / "failed" / "gan-quick-dynamic-seed1-abc123.png"
    assert strip in report.images  # what the failed run's samples looked like until it stopped


def test_published_figure_beside_ours(report) -> None:
    paper = section((report.out / "report.md").read_text(), "## mnist · dynamic · preset paper")
    pub = table_with(paper, "published")
    row = next(iter(pub.values()))
    assert row["published"] == "-86.76" and row["difference"] == "-0.24"
    assert "Burda" in row["source"]


def test_plots_exist_and_are_small(report) -> None:
    img = report.out / "img" / "synthetic-dynamic-quick"
    for name in ("metrics.png", "curves.png", "likelihood.png", "quality_vs_nll_cnn-aaaa.png"):
        path = img / name
        assert path.exists() and path.stat().st_size < 200_000
        assert min(Image.open(path).size) > 100
    assert not (img / "quality_vs_nll_inception-bbbb.png").exists()  # dcgan has FID but no NLL
    md = (report.out / "report.md").read_text()
    assert all((report.out / p).exists() for p in re.findall(r"\]\((img/[^)]+\.png)\)", md))
    assert "**FID** (`fid`)" in md and "**vae**:" in md  # the teaching sections


def test_training_progress_strip(report) -> None:
    from genbench.report.epochs import pick_epochs

    files = [Path(f"epoch_{i:03d}.png") for i in range(1, 11)]
    assert [f.stem for f in pick_epochs(files, 6)] == [f"epoch_{i:03d}" for i in (1, 3, 5, 6, 8, 10)]
    strip = report.out / "img" / "synthetic-dynamic-quick" / "galleries" / "gan" / "progress.png"
    assert strip in report.images
    assert Image.open(strip).size == (44 + 242, 6 * 32)  # six epochs, one 30-px row + padding each


def test_report_command(tmp_path: Path) -> None:
    from genbench.cli import app

    write_run(tmp_path / "res", "vae", 0, {"test_elbo": -90.0})
    runner = CliRunner()
    res = runner.invoke(app, ["report", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "r"),
                              "--no-galleries"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "r" / "index.html").exists()
    res = runner.invoke(app, ["report", "--results", str(tmp_path / "nope")])
    assert res.exit_code == 2 and "does not exist" in res.output
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["report", "--results", str(tmp_path / "empty")])
    assert res.exit_code == 2 and "no runs" in res.output


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PROBE = """<script>window.addEventListener('load', () => {
  const im = [...document.images];
  const ok = im.filter(i => i.complete && i.naturalWidth > 0).length;
  const d = document.createElement('div'); d.id = 'probe';
  d.textContent = 'IMAGES ' + im.length + ' LOADED ' + ok; document.body.prepend(d); });</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("headless Chromium is needed for the HTML test: apt-get install chromium")
    return exe


def test_html_renders_in_chromium_with_every_image(results: Path, tmp_path: Path) -> None:
    from run_folders import make_vae_run

    from genbench.report.build import build_report
    from genbench.report_cli import draw_for_report

    make_vae_run(results / "synthetic" / "vae" / "smoke-dynamic-seed7-ckpt", steps=5, seed=7)
    draw_for_report(results)  # where the checkpoints are loaded; the report places the files
    report = build_report(results, tmp_path / "report")
    html = (report.out / "index.html").read_text()
    assert "src=\"img/" not in html and html.count("data:image/png;base64,") == len(report.images)
    assert any(p.name == "samples.png" and "galleries" in p.parts for p in report.images)
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    exe, profile = chromium(), f"--user-data-dir={tmp_path / 'profile'}"
    dom = subprocess.run([exe, *CHROMIUM_FLAGS, profile, "--virtual-time-budget=10000", "--dump-dom",
                          probe.as_uri()], capture_output=True, text=True, timeout=120).stdout
    found = re.search(r"IMAGES (\d+) LOADED (\d+)", dom)
    assert found, "Chromium did not run the page's probe"
    assert int(found[1]) == len(report.images) > 5 and found[1] == found[2]
    shot = tmp_path / "shot.png"
    subprocess.run([exe, *CHROMIUM_FLAGS, profile, "--window-size=1000,1400", f"--screenshot={shot}",
                    (report.out / "index.html").as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 10, "the screenshot is blank"


def test_the_commands_that_made_the_runs_open_the_report(report) -> None:
    text = (report.out / "report.md").read_text()
    opening = text[: text.index("*Runs found.*")]
    listed = re.findall(r"^- `(genbench run [^`]+)`$", opening, flags=re.M)
    # one line per distinct command, in model order (vae, ae, gan, dcgan), the smoke run's none
    assert listed == ["genbench run vae --dataset mnist --preset paper",
                      "genbench run vae --dataset synthetic --preset quick",
                      "genbench run ae --dataset synthetic --preset quick --seed 1",
                      "genbench run gan --dataset synthetic --preset quick",
                      "genbench run dcgan --dataset synthetic --preset quick"]


def test_a_conditional_model_is_never_marked_best_on_likelihood() -> None:
    """m2's log p(x|y) beats the VAE's log p(x) without being the better density model; on
    sample quality it competes like any other."""
    import pandas as pd

    df = pd.DataFrame({"model": ["vae", "ae", "m2"], "status": ["finished"] * 3,
                       "conditional": [False, False, True], "test_ais": [-107.0, -125.0, -98.0],
                       "test_ais_stderr": [0.5] * 3, "fid": [200.0, 75.0, 70.0], "fid_stderr": [1.0] * 3})
    table = tables.comparison_table(df, ["test_ais", "fid"])
    rows = {r[0].text: r for r in table.rows}
    assert rows["m2 †"][2].text.startswith("-98") and not rows["m2 †"][2].best and rows["vae"][2].best
    assert rows["m2 †"][3].best and not rows["vae"][3].best and not rows["ae"][3].best


def test_two_identical_report_calls_draw_identical_galleries(tmp_path: Path) -> None:
    """The galleries (the latent scatter's PCA too) come from explicit generators: the same
    results give the same pictures whatever the global RNG holds."""
    import shutil

    from run_folders import make_vae_run

    from genbench.report.build import build_report
    from genbench.report_cli import draw_for_report

    run = make_vae_run(tmp_path / "res" / "synthetic" / "vae" / "smoke-dynamic-seed0-x", latent_dim=4,
                       steps=2)
    (run / "metrics.json").write_text(json.dumps({"status": "finished", "test_elbo": -300.0}))
    pictures = []
    for i in (1, 2):
        torch.manual_seed(i)
        shutil.rmtree(run / "galleries", ignore_errors=True)  # drawn afresh each time
        draw_for_report(tmp_path / "res")
        out = build_report(tmp_path / "res", tmp_path / f"report{i}")
        pictures.append({p.relative_to(out.out): p.read_bytes() for p in out.images
                         if "galleries" in p.parts})
    assert any(p.name == "scatter.png" for p in pictures[0]) and pictures[0] == pictures[1]


def test_exact_likelihood_sits_in_the_likelihood_table_and_config_conditional_is_marked(
        tmp_path: Path) -> None:
    """PixelCNN's exact log p(x) is a likelihood column of its own (not a trailing extra), and
    a model conditional by its config (pixelcnn with conditional=true) is marked like a CVAE."""
    from genbench.report.build import build_report

    root = tmp_path / "results"
    write_run(root, "pixelcnn", 0, {"test_exact": -95.0, "test_exact_stderr": 0.4})
    write_run(root, "vae", 0, {"test_elbo": -110.0, "test_elbo_stderr": 0.5})
    cond = write_run(root, "pixelcnn", 1, {"test_exact": -90.0, "test_exact_stderr": 0.4},
                     dataset="synthetic-c")
    config = json.loads((cond / "config.json").read_text())
    config["model_config"]["conditional"] = True
    (cond / "config.json").write_text(json.dumps(config))
    text = (build_report(root, tmp_path / "out").out / "report.md").read_text()
    rows = table_with(section(text, "Likelihood"), "exact log p(x) ↑")
    assert rows["pixelcnn"]["exact log p(x) ↑"].startswith("-95.00 (s.e. 0.40)")
    assert rows["vae"]["exact log p(x) ↑"] == "—" and "exact log p(x)" in text.split("## What")[1]
    assert "pixelcnn †" in text


def test_jmvae_log_p_x_given_y_beside_cvae_and_the_edit_table(tmp_path: Path) -> None:
    """JMVAE's log p(x|y) stands in one column with CVAE's IWAE bound (log p(x|y) too), unranked;
    its test_iwae stays log p(x) in the likelihood table. The edit metrics get their own table,
    labelled per attribute, attributes in the metric's order, slopes unranked."""
    from genbench.plugins import load_plugins
    from genbench.report.build import build_report

    load_plugins()
    root = tmp_path / "results"
    edits = {"edit_slope_thickness": 0.3, "edit_corr_thickness": 0.91, "edit_slope_slant": 0.2,
             "edit_corr_slant": 0.93, "edit_entanglement": 0.10, "edit_identity": 0.97}
    write_run(root, "jmvae", 0, {"test_iwae": -111.7, "test_iwae_stderr": 0.5,
                                 "test_iwae_given_y": -109.5, "test_iwae_given_y_stderr": 0.5,
                                 "test_iwae_joint": -111.8, "test_iwae_labels": -2.3, **edits})
    write_run(root, "cvae", 0, {"test_iwae": -107.1, "test_iwae_stderr": 0.5,
                                "not_applicable": {"test_iwae_given_y": "no joint model"}})
    write_run(root, "vae", 0, {"test_iwae": -108.5, "test_iwae_stderr": 0.5,
                               **{k: v * 2 for k, v in edits.items()}})
    text = (build_report(root, tmp_path / "out", galleries=False).out / "report.md").read_text()
    iwae = table_with(section(text, "### Likelihood\n"), "IWAE ↑")
    assert iwae["jmvae"]["IWAE ↑"].startswith("-111.7") and iwae["cvae †"]["IWAE ↑"].startswith("-107.1")
    col = "log p(x\\|y)"  # markdown escapes the bar
    given = table_with(section(text, "### Likelihood given the label"), col)
    assert given["jmvae"][col].startswith("-109.5")
    assert given["cvae †"][col].startswith("-107.1")  # its IWAE bound, the same quantity
    assert "**" not in given["jmvae"][col] + given["cvae †"][col]  # a bound beside no bound: not ranked
    assert given["jmvae"]["log p(y) (IWAE)"].startswith("-2.3") and given["vae"][col] == "—"
    edit_part = section(text, "### Attribute edits")
    header = next(t[0] for t in md_tables(edit_part) if "entanglement ↓" in t[0])
    assert header[2:] == ["thickness slope", "thickness corr ↑", "slant slope", "slant corr ↑",
                          "entanglement ↓", "identity kept ↑"]  # slopes: no direction
    assert table_with(edit_part, "entanglement ↓")["jmvae"]["thickness slope"] == "0.3"
    assert "### Other recorded values" not in text.split("## What")[0]
    glossary_part = text.split("## What the metrics say")[1]
    assert ("**thickness slope** (`edit_slope_thickness`): The least-squares slope of the achieved "
            "change of thickness") in glossary_part
    assert "neither a lower nor an upper bound" in glossary_part
