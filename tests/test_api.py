"""The Python API end to end: smoke runs, a tidy frame, the report's numbers, export."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

import genbench
from genbench.errors import GenbenchError

pytestmark = pytest.mark.usefixtures("one_thread")
METRICS = ("elbo", "iwae", "ais", "quality")


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory):
    """vae and dcgan, two seeds each, smoke preset on the synthetic data."""
    root = tmp_path_factory.mktemp("api") / "results"
    with pytest.MonkeyPatch.context() as mp:  # module scope: conftest's isolation by hand
        mp.setenv("GENBENCH_OFFLINE", "1")
        mp.setenv("GENBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        mp.setenv("GENBENCH_DATA", str(tmp_path_factory.getbasetemp() / "data"))
        outcomes = genbench.run(["vae", "dcgan"], dataset="synthetic", preset="smoke",
                                seeds=[0, 1], results=root, device="cpu", metrics=METRICS,
                                quiet=True)
    return root, outcomes


def test_run_returns_one_finished_outcome_per_model_and_seed(smoke_results) -> None:
    root, outcomes = smoke_results
    assert [(o.run_dir.parts[-2], o.status) for o in outcomes] == [
        ("vae", "finished"), ("vae", "finished"), ("dcgan", "finished"), ("dcgan", "finished")]
    assert all(o.run_dir.is_relative_to(root) for o in outcomes)


def test_the_recorded_command_remakes_the_same_runs(smoke_results) -> None:
    """config.json records the `genbench run` command equivalent to the API call (the
    report prints it): run through the CLI it plans the very same run folders."""
    import shlex

    from typer.testing import CliRunner

    from genbench.cli import app

    root, outcomes = smoke_results
    commands = {json.loads((o.run_dir / "config.json").read_text())["command"] for o in outcomes}
    assert commands == {"genbench run vae dcgan --dataset synthetic --preset smoke --seed 0 "
                        f"--seed 1 --metrics {','.join(METRICS)} --results {shlex.quote(str(root))}"
                        " --device cpu"}
    args = shlex.split(commands.pop())[2:]
    res = CliRunner().invoke(app, ["run", *args], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert res.output.count("already finished") == 4 and "earlier" in res.output


def test_load_results_is_tidy_and_holds_metrics_json(smoke_results) -> None:
    root, outcomes = smoke_results
    df = genbench.load_results(root)
    assert not df.duplicated(["run_dir", "metric"]).any()  # one row per run and metric
    assert set(df["model"]) == {"vae", "dcgan"} and set(df["seed"]) == {0, 1}
    assert set(df[["dataset", "variant", "preset", "status"]].itertuples(index=False, name=None)) == {
        ("synthetic", "dynamic", "smoke", "finished")}
    for o in outcomes:
        stored = json.loads((o.run_dir / "metrics.json").read_text())
        rows = df[df["run_dir"] == str(o.run_dir)].set_index("metric")
        numbers = {k: v for k, v in stored.items() if isinstance(v, float) and not k.startswith(
            ("_", "floor_")) and not k.endswith("_stderr") and k not in ("obs_sigma", "obs_flip")}
        assert numbers and set(numbers) <= set(rows.index)
        for key, value in numbers.items():
            assert rows.loc[key, "value"] == value
            se = stored.get(f"{key}_stderr")
            assert (rows.loc[key, "stderr"] == se) if se is not None else math.isnan(rows.loc[key, "stderr"])
        for key, reason in stored.get("not_applicable", {}).items():  # n/a: no number, a reason
            assert math.isnan(rows.loc[key, "value"]) and rows.loc[key, "na_reason"] == reason
        assert rows.loc["fid", "feature_space"] == stored["feature_space"]
        assert rows.loc["fid", "floor"] == stored["floor_fid"]
        assert pd.isna(rows.loc["test_ais", "feature_space"]) and pd.isna(rows.loc["fid", "observation"])
    ais = df[(df["metric"] == "test_ais") & df["value"].notna()]
    assert len(ais) >= 2
    assert (ais["nll"] == -ais["value"]).all()  # synthetic: binarized 28x28, no +8
    assert ais["bits_per_dim"].tolist() == pytest.approx((-ais["value"] / (784 * math.log(2))).tolist())
    assert set(df.loc[df["model"] == "vae"].query("metric == 'test_ais'")["observation"]) == {"own p(x|z)"}
    assert df.set_index("metric").loc["fid", "higher_is_better"].eq(False).all()
    assert df.set_index("metric").loc["test_elbo", "higher_is_better"].eq(True).all()


def test_summary_matches_the_reports_table(smoke_results) -> None:
    """Every (model, metric) of the summary is the report's mean, std and seeds, and the
    report's cell reads the same when formatted from the summary."""
    from genbench.report import tables

    root, _ = smoke_results
    summ = genbench.summary(genbench.load_results(root), long=True, bookkeeping=True)
    assert set(summ["n_seeds"]) == {2}
    runs = tables.finished(tables.load(root))
    compared = 0
    for r in summ.itertuples():
        part = runs[runs["model"] == r.model]
        if isinstance(r.feature_space, str):
            part = tables.in_space(part, r.feature_space)
        s = tables.stats(part, r.metric)
        assert s is not None, r.metric
        assert (s.n, s.mean) == (r.n_seeds, pytest.approx(r.mean, rel=1e-12, abs=1e-12))
        assert s.std == pytest.approx(r.std, rel=1e-12, abs=1e-12)
        assert (math.isnan(s.stderr) and math.isnan(r.stderr)) or s.stderr == pytest.approx(r.stderr)
        compared += 1
    assert compared >= 20
    keys = ["test_elbo", "test_ais", "test_ais_shared", "fid"]
    keys = [k for k in keys if k in set(summ["metric"])]
    table = tables.comparison_table(runs, keys)
    assert table is not None and len(table.columns) == 2 + len(keys)
    checked = 0
    for row in table.rows:
        model = row[0].text
        for key, cell in zip(keys, row[2:], strict=True):
            r = summ[(summ["model"] == model) & (summ["metric"] == key)]
            if r.empty:  # n/a for this model: the report says why, the summary has no row
                assert cell.text.startswith(("n/a", "—"))
                continue
            r = r.iloc[0]
            text = tables.fmt_stats(tables.Stats(r["mean"], r["std"], r["n_seeds"], r["stderr"]), 2)
            assert cell.text.startswith(text), (model, key, text, cell.text)  # then bpd, flags
            checked += 1
    assert checked >= 4


def test_summary_counts_only_finished_runs(smoke_results) -> None:
    root, _ = smoke_results
    df = genbench.load_results(root)
    first = df["run_dir"].iloc[0]
    df.loc[df["run_dir"] == first, "status"] = "failed"
    summ = genbench.summary(df, long=True)
    model = df.loc[df["run_dir"] == first, "model"].iloc[0]
    assert set(summ.loc[summ["model"] == model, "n_seeds"]) == {1}
    assert summ.loc[summ["model"] == model, "std"].isna().all()


def test_load_model_gives_the_trained_model_and_evaluate_reproduces_its_numbers(smoke_results) -> None:
    import torch

    _, outcomes = smoke_results
    vae = outcomes[0]
    model, data = genbench.load_model(vae.run_dir)
    assert isinstance(model, torch.nn.Module) and not model.training
    x = genbench.sample(model, 5, seed=0)  # the contract's derived sampler: prior + generate
    assert x.shape == (5, *data.info.shape) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, genbench.sample(model, 5, seed=0)) and not x.requires_grad
    assert not torch.equal(x, genbench.sample(model, 5, seed=1))
    again = genbench.evaluate(vae.run_dir, ["elbo"], device="cpu")
    assert again["test_elbo"] == pytest.approx(vae.metrics["test_elbo"], rel=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda root: genbench.run("nope", dataset="synthetic", preset="smoke", results=root),
     "unknown model 'nope'"),
    (lambda root: genbench.run("vae", dataset="synthetic", preset="smok", results=root),
     "unknown preset 'smok'"),
    (lambda root: genbench.run("vae", dataset="synthetic", preset="smoke", metrics="fdi",
                               results=root), "unknown metric 'fdi'"),
    (lambda root: genbench.run("vae", dataset="synthetic", preset="smoke", seeds="01",
                               results=root), "seeds: '0' is not a whole number"),
    (lambda root: genbench.run("vae", dataset="synthetic", preset="smoke", seeds=[0.5],
                               results=root), "seeds: 0.5 is not a whole number"),
    (lambda root: genbench.run("vae", dataset="synthetic", preset="smoke", epochs=1.5,
                               results=root), "epochs: 1.5 is not a whole number"),
    (lambda root: genbench.sample(genbench.load_model(next(root.glob("*/vae/*")))[0], 2.5),
     "n: 2.5 is not a whole number"),
    (lambda root: genbench.sample(genbench.load_model(next(root.glob("*/vae/*")))[0], 4, seed="x"),
     "seed: 'x' is not a whole number"),
    (lambda root: genbench.load_results(root / "missing"), "no results folder"),
    (lambda root: genbench.evaluate(root, ["elbo"]), "is not a run folder"),
    (lambda root: genbench.load_model(root), "is not a run folder"),
    (lambda root: genbench.summary(pd.DataFrame({"x": [1]})), "summary() needs the frame"),
    (lambda root: genbench.export_results(root, "xls"), "unknown --format 'xls'; use csv or parquet"),
])
def test_bad_input_is_one_line_genbench_error(call, message: str, smoke_results) -> None:
    root, _ = smoke_results
    with pytest.raises(GenbenchError) as err:
        call(root)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips_the_tidy_frame(fmt: str, smoke_results, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from genbench.cli import app

    root, _ = smoke_results
    out = tmp_path / f"r.{fmt}"
    res = CliRunner().invoke(app, ["export", str(root), "--format", fmt, "--out", str(out)])
    assert res.exit_code == 0, res.output
    back = pd.read_csv(out) if fmt == "csv" else pd.read_parquet(out)
    df = genbench.load_results(root)
    assert list(back.columns) == list(df.columns) and len(back) == len(df)
    pd.testing.assert_series_equal(back["value"], df["value"], check_dtype=False)
    assert back["metric"].tolist() == df["metric"].tolist()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp file left


def test_export_to_a_folder_or_under_a_file_is_one_error_line(smoke_results, tmp_path) -> None:
    from typer.testing import CliRunner

    from genbench.cli import app

    (tmp_path / "afile").write_text("x")
    for out, message in [(tmp_path, "is a folder"), (tmp_path / "afile" / "r.csv", "is under the file")]:
        res = CliRunner().invoke(app, ["export", str(smoke_results[0]), "--out", str(out)],
                                 env={"COLUMNS": "300"})
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1, res.output
        assert lines[0].startswith("error: --out") and message in lines[0], res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_export_without_pyarrow_names_the_extra(monkeypatch, smoke_results, tmp_path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    with pytest.raises(GenbenchError, match=r'pip install "genbench\[parquet\]"'):
        genbench.export_results(smoke_results[0], "parquet", tmp_path / "x.parquet")
    assert os.listdir(tmp_path) == []


def test_closing_table_fits_80_columns_with_whole_numbers() -> None:
    """On 80 columns the table keeps fewer columns, each number whole, and names the rest."""
    import io

    from rich.console import Console

    from genbench.cli import print_summary, summary_keys

    SUMMARY_KEYS = list(summary_keys())  # noqa: N806 - the headline keys their metrics declare
    from genbench.training import RunOutcome

    metrics = {"test_elbo": -114.2345, "test_elbo_stderr": 1.234, "test_iwae": -110.98765,
               "test_iwae_stderr": 1.1, "test_ais": -108.123456, "test_ais_stderr": 2.3456,
               "recon_bce": 200.98765, "recon_bce_stderr": 0.123, "fid": 123.4567,
               "test_error": 0.2234}
    outcomes = [RunOutcome("finished", Path(f"results/mnist/vaegan/quick-dynamic-seed{s}-abcdef"),
                           metrics) for s in (0, 1)]
    texts = {}
    for width in (80, 200):
        buf = io.StringIO()
        print_summary(outcomes, Path("results"), Console(file=buf, width=width))
        texts[width] = buf.getvalue()
        assert "…" not in texts[width]
        assert max(len(line) for line in texts[width].splitlines() if "│" in line) <= width
    wide, narrow = texts[200], texts[80]
    for key in [k for k in SUMMARY_KEYS if k in metrics][:3]:  # the first headline columns it has
        assert key in wide
    assert "-108.1±2.3" in narrow and "123.5" in narrow  # AIS and FID are kept first
    shown = [k for k in SUMMARY_KEYS if f" {k} ↑" in narrow or f" {k} ↓" in narrow]
    hidden = narrow.split("not shown: ")[1].split(" (")[0].split(", ")
    assert sorted(shown + hidden) == sorted(k for k in SUMMARY_KEYS if k in metrics)
    assert 2 <= len(shown) < 6


def test_list_metrics_says_which_way_is_better() -> None:
    from typer.testing import CliRunner

    from genbench.cli import app

    res = CliRunner().invoke(app, ["list", "metrics"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line for line in res.output.splitlines() if line.strip()}
    for key in ("test_elbo", "test_iwae", "test_ais", "inception_score", "precision"):
        assert "↑ higher is better" in lines[key], key
    for key in ("fid", "kid", "recon_bce", "bdmc_gap"):
        assert "↓ lower is better" in lines[key], key


def readme_example() -> str:
    """The README's Python API block, with the stated substitution (smoke runs of the
    synthetic data in place of the quick preset on MNIST)."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    after = text.split("<!-- readme-example: python-api", 1)[1]
    code = after.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.count('dataset="mnist", preset="quick"') == 1
    return code.replace('dataset="mnist", preset="quick"', 'dataset="synthetic", preset="smoke"')


def test_the_readme_example_runs(smoke_results, tmp_path: Path, monkeypatch) -> None:
    """On a copy of the smoke runs (the same runs: genbench.run finds them done, as the
    example's comment says, and skips them; the fixture tested running them)."""
    import shutil

    import torch

    shutil.copytree(smoke_results[0], tmp_path / "results")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    outcomes, df, table = namespace["outcomes"], namespace["df"], namespace["numbers"]
    assert [o.status for o in outcomes] == ["skipped"] * 4
    assert [o.run_dir.name for o in outcomes] == [o.run_dir.name for o in smoke_results[1]]
    assert (tmp_path / "results" / "synthetic").is_dir()
    assert set(df["model"]) == {"vae", "dcgan"} and set(table["n_seeds"]) == {2}
    assert namespace["images"].shape == (16, 1, 28, 28)
    assert isinstance(namespace["model"], torch.nn.Module)
    assert "test_iwae" in namespace["values"]
    assert set(namespace["curves"]["label"]) == {"vae", "dcgan"} and len(namespace["paired"]) > 0


def test_closing_table_shows_each_runs_seed_negative_ones_included() -> None:
    import io

    from rich.console import Console

    from genbench.cli import print_summary
    from genbench.training import RunOutcome

    outcomes = [RunOutcome("finished", Path(f"results/synthetic/vae/smoke-dynamic-seed{s}-e221c9"),
                           {"status": "finished", "test_elbo": -90.0}) for s in (-1, 0, 12)]
    buf = io.StringIO()
    print_summary(outcomes, Path("results"), Console(file=buf, width=120))
    seeds = [line.split("│")[2].strip() for line in buf.getvalue().splitlines() if "│ vae" in line]
    assert seeds == ["-1", "0", "12"]


def test_closing_table_flags_an_unconverged_ais() -> None:
    """As the report does (one rule, ``ResultKey.trust``): an AIS is shown bare only when BDMC
    certified it; one that did not converge, or converged with no certificate, is flagged."""
    import io

    from rich.console import Console

    from genbench.cli import print_summary
    from genbench.report import tables
    from genbench.training import RunOutcome

    base = {"status": "finished", "test_ais_shared": -139.16, "test_ais_shared_stderr": 6.3}
    flags = {"dcgan": {"ais_converged_shared": 0}, "gan": {"ais_converged_shared": 1},
             "vae": {"ais_converged_shared": 1, "ais_certified_shared": 1},
             "ae": {"ais_converged_shared": 1, "ais_certified_shared": 0}}
    outcomes = [RunOutcome("finished", Path(f"results/mnist/{m}/quick-dynamic-seed0-abcdef"),
                           {**base, **f}) for m, f in flags.items()]
    buf = io.StringIO()
    print_summary(outcomes, Path("results"), Console(file=buf, width=120))
    rows = {line.split("│")[1].strip(): line for line in buf.getvalue().splitlines() if "│" in line}
    assert "-139.2±6.3 ⚠" in rows["dcgan"] and "⚠" not in rows["vae"]
    assert "⚠" in rows["gan"] and "⚠" in rows["ae"]  # converged, not certified: not ranked
    runs = pd.DataFrame([{"model": m, **base, **f} for m, f in flags.items()])
    report = {m: tables.ais_status(runs[runs["model"] == m], "test_ais_shared") for m in flags}
    assert report == {"dcgan": "not converged", "gan": "converged", "vae": "certified", "ae": "converged"}


def test_summary_is_the_reports_wide_table_with_bold_in_its_html(smoke_results) -> None:
    """summary(df): a row per model, a column per metric, the report's cells; bookkeeping
    keys only on request; the long numbers at .long; the report's bold in _repr_html_."""
    from genbench.report import tables

    root, _ = smoke_results
    df = genbench.load_results(root)
    wide = genbench.summary(df)
    assert list(wide.index.names) == ["dataset", "variant", "preset", "model"]
    assert {m for *_, m in wide.index} == {"vae", "dcgan"} and set(wide["seeds"]) == {2}
    runs = tables.finished(tables.load(root))
    report = tables.comparison_table(runs, ["test_elbo", "fid"])
    cells = {r[0].text: [c.text for c in r[2:]] for r in report.rows if r[1].text != "—"}
    for model, (elbo, fid) in cells.items():
        row = wide.xs(model, level="model").iloc[0]
        assert (row["test_elbo"], row["fid"]) == (elbo, fid)
    assert "ais_accept" not in wide.columns and "eval_seconds" not in wide.columns
    assert "ais_accept" in genbench.summary(df, bookkeeping=True).columns
    assert set(wide.long["metric"]) == set(genbench.summary(df, long=True)["metric"])
    html = wide._repr_html_()
    bold = [(row, key) for row, key in wide.attrs["bold"]]
    assert ("font-weight: bold" in html) == bool(bold)
    assert "confidence set" in html


def test_history_and_per_image_loaders_are_tidy(smoke_results) -> None:
    root, outcomes = smoke_results
    curves = genbench.load_history(root)
    assert set(curves["run_dir"]) == {str(o.run_dir) for o in outcomes}
    one = curves[(curves["run_dir"] == str(outcomes[0].run_dir)) & (curves["term"] == "loss")]
    history = pd.read_csv(outcomes[0].run_dir / "history.csv")
    assert one.sort_values("epoch")["value"].tolist() == pytest.approx(history["loss"].tolist())
    paired = genbench.load_per_image(root)
    stored = json.loads((outcomes[0].run_dir / "per_image.json").read_text())
    key = next(iter(stored))
    mine = paired[(paired["run_dir"] == str(outcomes[0].run_dir)) & (paired["metric"] == key)]
    assert mine["image"].tolist() == stored[key]["indices"]
    assert mine["value"].tolist() == pytest.approx(stored[key]["values"])
    assert not paired.duplicated(["run_dir", "metric", "image"]).any()


def test_bad_input_raises_the_error_genbench_exports(tmp_path) -> None:
    """`genbench.GenbenchError` is the class the API raises, so a script can catch it without
    knowing the module it lives in; nothing is written."""
    import genbench

    with pytest.raises(genbench.GenbenchError, match="hmc_persistence must be at least 0.0"):
        genbench.run("vae", dataset="synthetic", preset="smoke", overrides={"hmc_persistence": -0.5},
                     results=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()
