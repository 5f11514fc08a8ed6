"""The command line: listings, the run table, and one clear line for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genbench.cli import app

runner = CliRunner()


def _run(*args: str):
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.mark.parametrize("what", ["models", "datasets", "metrics", "presets"])
def test_list_sections_have_one_line_descriptions(what: str) -> None:
    out = _run("list", what)
    assert out.exit_code == 0, out.output
    expected = {"models": ["vae", "Variational autoencoder", "ae"],
                "datasets": ["mnist-5k", "synthetic"],
                "metrics": ["test_elbo", "recon_bce", "active_units"],
                "presets": ["smoke", "quick", "paper"]}[what]
    for word in expected:
        assert word in out.output


def test_list_all_and_unknown_section() -> None:
    assert all(s in _run("list").output for s in ("models", "datasets", "metrics", "presets"))
    out = _run("list", "modles")
    assert out.exit_code == 2 and "unknown list 'modles'" in out.output


def _one_line_error(out, *fragments: str) -> None:
    assert out.exit_code == 2, out.output
    assert "Traceback" not in out.output
    lines = [line for line in out.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out.output
    for fragment in fragments:
        assert fragment in out.output


def test_unknown_model_suggests_the_closest(tmp_path: Path) -> None:
    out = _run("run", "vea", "--dataset", "synthetic", "--results", str(tmp_path))
    _one_line_error(out, "unknown model 'vea'", "did you mean vae")
    assert not any(tmp_path.iterdir())  # nothing written


def test_unknown_set_key_lists_the_valid_keys(tmp_path: Path) -> None:
    out = _run("run", "vae", "--dataset", "synthetic", "--set", "latnet_dim=2",
               "--results", str(tmp_path))
    _one_line_error(out, "unknown --set key 'latnet_dim'", "latent_dim", "batch_size")


def test_bad_set_value_and_form(tmp_path: Path) -> None:
    _one_line_error(_run("run", "vae", "--dataset", "synthetic", "--set", "latent_dim=two"),
                    "expected a int")
    _one_line_error(_run("run", "vae", "--dataset", "synthetic", "--set", "latent_dim"),
                    "KEY=VALUE")


@pytest.mark.parametrize(("model", "setting", "choices"), [
    ("vae", "ais_init=posterior", "encoder, prior"),
    ("vae", "feature_extractor=vgg", "classifier, inception"),
    ("m2", "weighting=equal", "paper, balanced"),
])
def test_a_name_outside_its_choices_is_refused_before_anything_runs(
        model: str, setting: str, choices: str, tmp_path: Path) -> None:
    """Was accepted: AIS then n/a, or the run failed when the model was built (exit 1)."""
    out = _run("run", model, "--dataset", "synthetic", "--preset", "smoke", "--set", setting,
               "--results", str(tmp_path))
    _one_line_error(out, f"--set {setting}", f"must be one of {choices}")
    assert not any(tmp_path.iterdir())  # nothing written


def test_unknown_dataset_preset_and_device(tmp_path: Path) -> None:
    _one_line_error(_run("run", "vae", "--dataset", "mnsit"), "unknown dataset 'mnsit'", "mnist")
    _one_line_error(_run("run", "vae", "--preset", "quik"), "unknown preset 'quik'", "quick")
    _one_line_error(_run("run", "vae", "--device", "tpu", "--dataset", "synthetic"), "--device")


def test_missing_data_says_where_it_looked(tmp_path: Path) -> None:
    out = _run("run", "vae", "--dataset", "celeba", "--data-dir", str(tmp_path / "nowhere"))
    _one_line_error(out, str(tmp_path / "nowhere"))


def test_run_prints_the_table_and_where_results_are(tmp_path: Path) -> None:
    out = _run("run", "vae", "ae", "--dataset", "synthetic", "--preset", "smoke",
               "--seed", "0", "--seed", "1", "--device", "cpu", "--results", str(tmp_path),
               "--metrics", "elbo,recon")
    assert out.exit_code == 0, out.output
    assert "test_elbo" in out.output and "recon_bce" in out.output
    assert str(tmp_path.resolve()) in out.output.replace("\n", "")
    assert len(list(tmp_path.glob("synthetic/*/*/metrics.json"))) == 4
    again = _run("run", "vae", "--dataset", "synthetic", "--preset", "smoke", "--device", "cpu",
                 "--results", str(tmp_path), "--metrics", "elbo,recon")
    assert again.exit_code == 0 and "already finished" in again.output and "--force" in again.output


def test_eval_adds_metrics_without_retraining(tmp_path: Path) -> None:
    _run("run", "vae", "--dataset", "synthetic", "--preset", "smoke", "--device", "cpu",
         "--results", str(tmp_path), "--metrics", "elbo")
    run_dir = next(tmp_path.glob("synthetic/vae/*"))
    before = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    first = json.loads((run_dir / "metrics.json").read_text())
    out = _run("eval", str(run_dir), "--metrics", "recon", "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert "recon_bce" in (run_dir / "metrics.json").read_text()
    assert "test_elbo" in (run_dir / "metrics.json").read_text()
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == before
    # the row's evaluation time is what its numbers cost: a metric added, its seconds added;
    # a metric measured again, its old seconds replaced by the new
    added = json.loads((run_dir / "metrics.json").read_text())
    assert added["eval_seconds"] == pytest.approx(first["eval_seconds"] + added["_seconds_recon"], abs=0.02)
    assert _run("eval", str(run_dir), "--metrics", "elbo", "--device", "cpu").exit_code == 0
    again = json.loads((run_dir / "metrics.json").read_text())
    assert again["eval_seconds"] == pytest.approx(
        added["eval_seconds"] - added["_seconds_elbo"] + again["_seconds_elbo"], abs=0.02)
    _one_line_error(_run("eval", str(tmp_path)), "not a run folder")


def test_eval_seconds_replace_what_was_measured_again_and_drop_what_a_new_budget_dropped() -> None:
    """A metric measured again: its old seconds out, its new in; under a new budget the row
    keeps none of its old numbers, so none of their seconds either."""
    from genbench.running.evaluation import eval_seconds

    row = {"eval_seconds": 10.0, "_seconds_a": 3.0, "_seconds_b": 2.0}
    assert eval_seconds(row, {"_seconds_a": 1.0}) == {"eval_seconds": 8.0}
    assert eval_seconds(row, {"_seconds_c": 4.0}) == {"eval_seconds": 14.0}
    assert eval_seconds(row, {"_seconds_a": 1.0}, everything=True) == {"eval_seconds": 6.0}
    assert eval_seconds({"status": "finished"}, {"_seconds_a": 1.0}) == {}


def test_eval_under_another_preset_measures_the_whole_row_again_and_prints_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One budget per row: `eval --preset P` on a run of another preset measures every metric
    of the run under P (the old budget's numbers go), later additions join at P, and eval
    prints only what changed."""
    import json

    from genbench import presets

    tiny = presets.PRESETS["smoke"].with_overrides(name="tiny", n_eval=32)
    monkeypatch.setitem(presets.PRESETS, "tiny", tiny)
    _run("run", "vae", "--dataset", "synthetic", "--preset", "smoke", "--device", "cpu",
         "--results", str(tmp_path), "--metrics", "elbo,recon")
    run_dir = next(tmp_path.glob("synthetic/vae/*"))
    before = json.loads((run_dir / "metrics.json").read_text())
    out = _run("eval", str(run_dir), "--metrics", "active_units", "--preset", "tiny", "--device", "cpu")
    assert out.exit_code == 0, out.output
    after = json.loads((run_dir / "metrics.json").read_text())
    assert after["eval_preset"] == "tiny" and after["status"] == "finished"
    assert {"_seconds_elbo", "_seconds_recon", "_seconds_active_units"} <= set(after)
    assert after["test_elbo"] != before["test_elbo"]  # measured again on 32 images, not kept
    assert after["train_seconds"] == before["train_seconds"]
    seconds = {k: v for k, v in after.items() if k.startswith("_seconds_")}
    assert after["eval_seconds"] == pytest.approx(  # every old metric's seconds replaced
        before["eval_seconds"] - sum(v for k, v in before.items() if k.startswith("_seconds_"))
        + sum(seconds.values()), abs=0.02)
    assert "measured again under tiny" in out.output and "test_elbo" in out.output
    assert "test_elbo_stderr" not in out.output and "_seconds" not in out.output
    again = _run("eval", str(run_dir), "--metrics", "active_units", "--device", "cpu")
    assert again.exit_code == 0, again.output
    assert json.loads((run_dir / "metrics.json").read_text())["eval_preset"] == "tiny"
    assert "test_elbo" not in again.output  # unchanged: not printed


def test_closing_table_skips_a_shared_column_equal_to_its_own_twin_and_prints_wall_time() -> None:
    """A Bernoulli VAE's shared family is its own decoder: test_ais_shared would repeat
    test_ais and push test_iwae off 80 columns. A GAN's shared AIS, alone, stays."""
    import io

    from rich.console import Console

    from genbench.cli import print_summary
    from genbench.training import RunOutcome

    vae = {"test_elbo": -114.2, "test_iwae": -108.5, "test_iwae_stderr": 1.2, "test_ais": -103.6,
           "test_ais_stderr": 4.6, "test_ais_shared": -103.6, "test_ais_shared_stderr": 4.6,
           "recon_bce": 81.5, "fid": 199.6}
    outcomes = [RunOutcome("finished", Path("results/mnist-5k/vae/quick-dynamic-seed0-abcdef"), vae)]
    buf = io.StringIO()
    print_summary(outcomes, Path("results"), Console(file=buf, width=80), seconds=125.0)
    text = buf.getvalue()
    assert "test_ais_shared" not in text and "test_iwae" in text and "-108.5±1.2" in text
    assert "total wall time: 2 min 05 s" in text
    gan = {"test_ais_shared": -173.9, "fid": 91.3}
    outcomes.append(RunOutcome("finished", Path("results/mnist-5k/gan/quick-dynamic-seed0-abcdef"), gan))
    buf = io.StringIO()
    print_summary(outcomes, Path("results"), Console(file=buf, width=200))
    assert "test_ais_shared" in buf.getvalue()


def test_help_and_a_cached_list_import_no_torch(tmp_path: Path) -> None:
    """`genbench --help` and every `genbench list` after the first answer without importing
    torch (seconds); the first one imports the plugins and caches the listing."""
    import os
    import subprocess
    import sys

    probe = ("import sys; from typer.testing import CliRunner; from genbench.cli import app; "
             "r = CliRunner().invoke(app, sys.argv[1:], env={'COLUMNS': '200'}); "
             "assert r.exit_code == 0, r.output; print('torch' in sys.modules, 'vae' in r.output)")
    env = {**os.environ, "GENBENCH_CACHE": str(tmp_path)}

    def run(*args: str) -> str:
        return subprocess.run([sys.executable, "-c", probe, *args], env=env, capture_output=True,
                              text=True, check=True).stdout.split()

    assert run("--help")[0] == "False"
    assert run("list", "models") == ["True", "True"]  # the first: plugins imported, cached
    assert run("list", "models") == ["False", "True"]  # then from the cache
