"""A run folder of outside samples (`genbench score`) has no model: every command that needs
one says so in one line (exit 2 / GenbenchError) with what to do instead, writes nothing, and
never asks for a checkpoint that will never exist; the commands that need no model work."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import genbench
from genbench.cli import app
from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError

pytestmark = pytest.mark.usefixtures("one_thread")
OUTSIDE = "holds outside samples scored by `genbench score`: it has no model to"


@pytest.fixture(scope="module")
def outside(tmp_path_factory) -> Path:
    """An external run: 100 synthetic test images scored at the smoke preset."""
    results = tmp_path_factory.mktemp("outside") / "results"
    images = load_dataset(DataRequest("synthetic")).test.x[:100]
    out = genbench.score(images, dataset="synthetic", name="their-gan", preset="smoke",
                         overrides={"n_quality": "100"}, results=results, device="cpu")
    return out.run_dir


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


@pytest.mark.parametrize(("args", "says"), [
    (("eval", "{run}"), "evaluate; rescore them with `genbench score SAMPLES --dataset synthetic "
                        "--name their-gan --preset smoke"),
    (("eval", "{run}", "--preset", "quick", "--metrics", "quality"), "evaluate; rescore them with"),
    (("eval", "{run}", "--allow-unfinished"), "evaluate; rescore them with"),
    (("gallery", "{run}"), "decode galleries from; its first 64 samples are in {run}/samples.png"),
    (("gallery", "{run}", "--kind", "samples"), "decode galleries from; its first 64 samples"),
    (("check", "{run}"), "check; `genbench check MODEL` smoke-checks a genbench model"),
])
def test_model_only_commands_say_what_to_do_instead(outside, args, says):
    before = _files(outside.parents[2])
    out = _cli(*(a.format(run=outside) for a in args))
    assert out.exit_code == 2, out.output
    line = " ".join(out.output.split())  # rich may wrap the one line
    assert f"{outside} {OUTSIDE} {says.format(run=outside)}" in line, out.output
    assert "checkpoint" not in out.output and "Traceback" not in out.output
    assert _files(outside.parents[2]) == before  # nothing written, no lock left behind


def test_export_of_the_run_folder_names_the_results_folder_and_the_results_folder_exports(outside):
    root = outside.parents[2]
    out = _cli("export", str(outside))
    assert out.exit_code == 2
    assert (f"is a run folder (outside samples scored by `genbench score`), not a results folder; "
            f"export the results folder that holds it: `genbench export {root.absolute()}`"
            in " ".join(out.output.split())), out.output
    assert _cli("export", str(root), "--out", str(root.parent / "all.csv")).exit_code == 0
    assert "their-gan" in (root.parent / "all.csv").read_text()
    assert _cli("list", "models").exit_code == 0  # a label, not a registered model


def test_the_python_api_says_the_same(outside):
    from genbench.galleries import render, render_all

    with pytest.raises(GenbenchError, match=r"no model to evaluate; rescore them with `genbench score"):
        genbench.evaluate(outside)
    with pytest.raises(GenbenchError, match=r"no model to load; its numbers are in .*metrics.json"):
        genbench.load_model(outside)
    for call in (lambda: render(outside, "samples"), lambda: render_all(outside, outside / "g")):
        with pytest.raises(GenbenchError, match="no model to decode galleries from; its first 64 "
                                                "samples are in .*samples.png"):
            call()
    assert not (outside / "g").exists()
    df = genbench.load_results(outside.parents[2])  # what needs no model works
    assert set(df["model"]) == {"their-gan"}
    assert torch.isfinite(torch.tensor(df["value"].dropna().to_numpy())).all()


def test_the_reports_galleries_say_outside_samples_have_no_model(outside, tmp_path):
    from types import SimpleNamespace

    from genbench.report import tables
    from genbench.report.document import Document, to_markdown
    from genbench.report.galleries import add_galleries

    (_, runs), = tables.groups(tables.load(outside.parents[2]))
    doc = Document("report")
    summary = SimpleNamespace(say=lambda *_: None, images=[])
    add_galleries(doc, runs, outside.parents[2], tmp_path / "img", tmp_path, summary)
    text = " ".join(to_markdown(doc).split())
    assert "Outside samples scored by `genbench score`: no model to decode galleries from" in text
    assert "checkpoint" not in text


def test_outside_samples_are_never_filed_beside_trained_runs_of_the_same_name(tmp_path):
    """A label that names trained runs (a plugin's, say, not loaded now) is refused before
    anything is written: the report and `genbench run`'s resume would mistake one for the other."""
    trained = tmp_path / "r" / "synthetic" / "myplugin" / "smoke-dynamic-seed0-abc"
    trained.mkdir(parents=True)
    (trained / "config.json").write_text('{"model": "myplugin"}')
    images = load_dataset(DataRequest("synthetic")).test.x[:20]
    with pytest.raises(GenbenchError, match=r"--name 'myplugin': .*myplugin holds runs genbench "
                                            r"trained \(smoke-dynamic-seed0-abc\); name the outside "
                                            r"samples apart \(e.g. --name myplugin-external\)"):
        genbench.score(images, dataset="synthetic", name="myplugin", preset="smoke",
                       overrides={"n_quality": "20"}, results=tmp_path / "r", device="cpu")
    assert [p.name for p in trained.parent.iterdir()] == [trained.name]


@pytest.mark.parametrize("force", [False, True])
def test_genbench_run_refuses_a_model_folder_of_outside_samples(tmp_path, force):
    """A model named like outside samples scored earlier (a plugin registered later): `genbench
    run` (resume or --force) says so in one line before training or writing anything."""
    theirs = tmp_path / "r" / "synthetic" / "vae" / "quick-dynamic-seed0-abc"
    theirs.mkdir(parents=True)
    (theirs / "config.json").write_text('{"model": "vae", "external": true}')
    out = _cli("run", "vae", "--dataset", "synthetic", "--preset", "smoke", "--results",
               str(tmp_path / "r"), "--device", "cpu", *(["--force"] if force else []))
    assert out.exit_code == 2, out.output
    assert ("holds outside samples scored by `genbench score` under the name 'vae' "
            "(quick-dynamic-seed0-abc); train vae into another --results folder"
            in " ".join(out.output.split())), out.output
    assert [p.name for p in theirs.parent.iterdir()] == [theirs.name]
    with pytest.raises(GenbenchError, match="holds outside samples"):
        genbench.run("vae", dataset="synthetic", preset="smoke", results=tmp_path / "r", device="cpu")
