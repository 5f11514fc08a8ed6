"""The report reads only the store: galleries are drawn where models are loaded (at the end of
evaluation, or by ``genbench gallery --results``) and the report places the files it finds,
so a results folder whose checkpoints are gone still reports its pictures."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from run_folders import make_run
from typer.testing import CliRunner

import genbench
from genbench.cli import app

REPORT = Path(genbench.__file__).parent / "report"
LOADERS = ("genbench.plugins", "genbench.loading", "genbench.galleries")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, function-level imports included (absolute names)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module if node.level == 0 else "genbench.report." + node.module
            found += [(node.lineno, base)] + [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return found


def test_no_report_module_imports_plugins_loading_or_galleries() -> None:
    modules = sorted(REPORT.glob("*.py"))
    assert len(modules) > 5  # the walk found the package
    bad = [f"{p.name}:{line} imports {name}" for p in modules for line, name in imported_modules(p)
           if any(name == m or name.startswith(m + ".") for m in LOADERS)]
    assert bad == []


def test_the_import_check_catches_a_function_level_import(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from genbench import galleries\n    import genbench.loading\n")
    names = [n for _, n in imported_modules(probe)]
    assert "genbench.galleries" in names and "genbench.loading" in names


def test_a_report_without_checkpoints_shows_the_galleries_drawn_at_evaluation(
        tmp_path: Path, monkeypatch) -> None:
    """A run's evaluation draws its galleries (smoke skips them unless told: here it is told),
    `genbench gallery --results` draws the rest and the pictures across models; with every
    checkpoint deleted, a report built in a process that never imports a loader shows them all."""
    import genbench.training

    monkeypatch.setattr(genbench.training, "NO_GALLERIES_AT_EVALUATION", frozenset())
    results = tmp_path / "results"
    out = CliRunner().invoke(app, ["run", "vae", "--dataset", "synthetic", "--preset", "smoke",
                                   "--device", "cpu", "--results", str(results), "--metrics", "elbo"],
                             env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    vae = next(results.glob("synthetic/vae/*"))
    index = json.loads((vae / "galleries" / "galleries.json").read_text())
    kinds = [i["kind"] for i in index["images"]]
    assert kinds[:3] == ["samples", "reconstructions", "interpolation"] and index["seed"] == 0
    assert all((vae / "galleries" / f"{k}.png").stat().st_size > 100 for k in kinds)
    assert f"galleries: {len(kinds)} in" in out.output
    # a second model with a checkpoint but no galleries (evaluated elsewhere, or a smoke run)
    gan = make_run(results / "synthetic" / "gan" / "smoke-dynamic-seed0-g", "gan", steps=2, latent_dim=None)
    (gan / "metrics.json").write_text(json.dumps({"status": "finished", "test_fid": 300.0}))
    drawn = CliRunner().invoke(app, ["gallery", "--results", str(results)], env={"COLUMNS": "200"})
    assert drawn.exit_code == 0, drawn.output
    assert "galleries of gan" in drawn.output and "galleries of vae" not in drawn.output  # vae had them
    across = results / "synthetic" / "_across" / "dynamic-smoke"
    assert {"across_samples.png", "across.json"} <= {p.name for p in across.iterdir()}
    for ckpt in results.glob("*/*/*/checkpoint.pt"):
        ckpt.unlink()
    report = tmp_path / "report"
    code = ("import sys; from genbench.report.build import build_report; "
            f"build_report({str(results)!r}, {str(report)!r}); "
            f"print(sorted(m for m in sys.modules if m.startswith({LOADERS!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"  # no loader was imported
    text = (report / "report.md").read_text()
    for kind in kinds:
        assert f"galleries/vae/{kind}.png" in text
        assert (report / "img" / "synthetic-dynamic-smoke" / "galleries" / "vae" / f"{kind}.png").is_file()
    assert "galleries/gan/samples.png" in text and "galleries/across_samples.png" in text
    assert "rows, top to bottom: vae, gan" in text
    assert "genbench gallery --results" not in text  # nothing missing, so no hint


def test_the_report_says_how_to_draw_missing_galleries_and_gallery_results_takes_no_run(
        tmp_path: Path) -> None:
    from genbench.report.build import build_report

    results = tmp_path / "results"
    for model in ("vae", "ae"):
        run = make_run(results / "synthetic" / model / f"smoke-dynamic-seed0-{model}", model, steps=1)
        (run / "metrics.json").write_text(json.dumps({"status": "finished", "test_elbo": -300.0}))
    summary = build_report(results, tmp_path / "report")
    text = (summary.out / "report.md").read_text()
    hint = f"`genbench gallery --results {results.as_posix()}` draws them"
    assert text.count(hint) == 3  # the pictures across models, and each model's galleries
    assert summary.notes == ["some galleries are not drawn yet: genbench gallery --results "
                             f"{results.as_posix()}"]  # and a warning on the command line
    bad = CliRunner().invoke(app, ["gallery", str(run), "--results", str(results)])
    assert bad.exit_code == 2 and "without RUN_DIR" in bad.output
    assert not (run / "galleries").exists()
    (run / "checkpoint.pt").unlink()  # ae: nothing to draw from; one model cannot be compared
    text = (build_report(results, tmp_path / "report2").out / "report.md").read_text()
    assert text.count(hint) == 1 and text.count("no checkpoint.pt among its finished runs") == 1


def test_a_reference_row_is_marked_from_its_config_alone(tmp_path):
    """An adversary's row is marked and its gamed numbers flagged from what the runner wrote
    into config.json, with no model registered under its name (a plugin not loaded now)."""
    import json

    from genbench.report import adversarial, tables

    for model, extra in (("someadv", {"reference_row": "adversarial: games the classifier",
                                      "games": ["inception_score"]}), ("vae", {})):
        run = tmp_path / "mnist-5k" / model / "quick-dynamic-seed0-abcdef"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({
            "model": model, "seed": 0, "model_config": {}, "preset": {"name": "quick"},
            "dataset": {"name": "mnist-5k", "variant": "dynamic"}, **extra}))
        (run / "metrics.json").write_text(json.dumps({"status": "finished", "inception_score": 9.0}))
    runs = tables.load(tmp_path)
    assert adversarial.references(runs) == {"someadv"}
    assert adversarial.gamed(runs, "someadv") == {"inception_score"}
    assert adversarial.gamed(runs, "vae") == frozenset()


def test_the_models_section_reads_descriptions_and_conditioning_from_the_store(tmp_path: Path) -> None:
    """A plugin model not registered now is described by what its run recorded (config.json's
    ``model_description``, written by the runner), and marked conditional (†) from its
    recorded ``conditional_model``; a run recorded before either falls back to the registry."""
    from genbench.report import tables
    from genbench.report.build import build_report
    from genbench.training import report_declarations

    class Cond:
        conditional = True

    declared = report_declarations(Cond, "My conditional flow, from a plugin.")
    assert declared == {"conditional_model": True, "model_description": "My conditional flow, from a plugin."}
    for model, extra in (("myflow", declared), ("cvae", {})):
        run = tmp_path / "mnist-5k" / model / "quick-dynamic-seed0-abcdef"
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({
            "model": model, "seed": 0, "model_config": {}, "preset": {"name": "quick"},
            "dataset": {"name": "mnist-5k", "variant": "dynamic"}, **extra}))
        (run / "metrics.json").write_text(json.dumps({"status": "finished", "test_elbo": -100.0}))
    runs = tables.load(tmp_path)
    assert set(runs.loc[runs["conditional"], "model"]) == {"myflow", "cvae"}
    text = (build_report(tmp_path, tmp_path / "report").out / "report.md").read_text()
    models = text[text.index("## The models"):]
    flow = next(line for line in models.splitlines() if line.startswith("- **myflow**"))
    assert "My conditional flow, from a plugin." in flow and "†" in flow
    cvae = next(line for line in models.splitlines() if line.startswith("- **cvae**"))
    assert "†" in cvae  # recorded before conditional_model: the registry's class says so
