"""Runs are pooled over seeds only within one configuration: two configurations of one model
are two rows, labelled with what differs, and a configuration and seed run twice counts once
(the newest), in the report, in ``genbench.summary`` and in ``genbench export``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

import genbench
from genbench.report import configs, tables


def fake_run(root: Path, name: str, seed: int, elbo: float, *, latent_dim: int = 8,
             lr: float = 0.001, written: float = 1e9) -> Path:
    """A finished vae run folder holding only config.json and metrics.json, written at
    ``written`` (seconds since the epoch: which run is newer)."""
    folder = root / "synthetic" / "vae" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "model": "vae", "seed": seed, "model_config": {"latent_dim": latent_dim, "lr": lr},
        "preset": {"name": "smoke", "description": "seconds", "batch_size": 64, "metrics": []},
        "dataset": {"name": "synthetic", "variant": "dynamic"}}))
    (folder / "metrics.json").write_text(json.dumps({
        "status": "finished", "test_elbo": elbo, "test_elbo_stderr": 0.5}))
    for f in folder.iterdir():
        os.utime(f, (written, written))
    return folder


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """vae (latent_dim=8) seeds 0 and 1; vae (latent_dim=2, lr=0.01) seed 0 run twice, the
    second (newer) run at -300."""
    root = tmp_path / "results"
    fake_run(root, "smoke-dynamic-seed0-aaaaaa", 0, -500.0)
    fake_run(root, "smoke-dynamic-seed1-aaaaaa", 1, -502.0)
    fake_run(root, "smoke-dynamic-seed0-bbbbbb", 0, -400.0, latent_dim=2, lr=0.01, written=1e9)
    fake_run(root, "smoke-dynamic-seed0-cccccc", 0, -300.0, latent_dim=2, lr=0.01, written=2e9)
    return root


SMALL, DEFAULT = "vae (latent_dim=2, lr=0.01)", "vae (latent_dim=8, lr=0.001)"


def test_labels_name_only_the_settings_that_differ() -> None:
    a, b = {"latent_dim": 2, "lr": 0.01, "hidden": [64]}, {"latent_dim": 8, "lr": 0.01, "hidden": [64]}
    assert configs.differing([a, b]) == ["latent_dim"]
    assert configs.label("vae", a, ["latent_dim"]) == "vae (latent_dim=2)"
    assert configs.label("vae", a, []) == "vae"
    # the preset's name, prose and metric list are no settings; model fields win over preset's
    got = configs.settings({"preset": {"name": "q", "description": "x", "metrics": ["fid"],
                                       "epochs": 30}, "model_config": {"epochs": 5}})
    assert got == {"epochs": 5}


def test_report_keeps_configurations_apart_and_says_which_run_counts(mixed: Path,
                                                                     tmp_path: Path) -> None:
    from genbench.report.build import build_report

    said: list[str] = []
    summary = build_report(mixed, tmp_path / "out", galleries=False, progress=said.append)
    assert said[0] == "group 1/1: synthetic · dynamic · smoke (3 runs)"  # talkative, per group
    assert any(line.startswith("  figure metrics.png (") for line in said)
    text = (tmp_path / "out" / "report.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines()
            if line.startswith("| vae")}
    # two rows; the duplicate seed is not a second seed, and its newest run (-300) counts
    assert "| 1 | -300" in rows[SMALL].replace("**", "")
    assert "| 2 | -501.0 ± 1.4" in rows[DEFAULT].replace("**", "")
    assert "| latent_dim=2, lr=0.01 |" in text  # the resolved differences are listed
    assert "Runs measured twice" in text and "`smoke-dynamic-seed0-cccccc`) counts" in text
    assert "smoke-dynamic-seed0-bbbbbb" in text
    assert any("run more than once" in n for n in summary.notes)
    df = tables.load(mixed)
    assert sorted(df["model"]) == [SMALL, DEFAULT, DEFAULT] and set(df["model_name"]) == {"vae"}


def test_summary_and_export_keep_configurations_apart(mixed: Path) -> None:
    df = genbench.load_results(mixed)
    elbo = df[df["metric"] == "test_elbo"].set_index("run_dir")
    assert set(elbo["label"]) == {SMALL, DEFAULT} and set(elbo["model"]) == {"vae"}
    assert elbo["superseded"].sum() == 1
    assert bool(elbo.loc[str(mixed / "synthetic/vae/smoke-dynamic-seed0-bbbbbb"), "superseded"])
    assert sorted(elbo["latent_dim"]) == [2, 2, 8, 8] and "lr" in elbo  # a sweep's axes
    assert json.loads(elbo["config"].iloc[0])["batch_size"] == 64
    with pytest.warns(UserWarning, match="1 older run"):
        summ = genbench.summary(df, long=True)
    summ = summ[summ["metric"] == "test_elbo"].set_index("label")
    assert summ.loc[SMALL, ["mean", "n_seeds"]].tolist() == [-300.0, 1]
    assert summ.loc[DEFAULT, ["mean", "n_seeds"]].tolist() == [-501.0, 2]
    from genbench.errors import GenbenchWarning

    with pytest.warns(GenbenchWarning, match="superseded=True"):
        path = genbench.export_results(mixed, "csv")
    exported = pd.read_csv(path)
    assert {"label", "config_id", "superseded", "config", "latent_dim"} <= set(exported.columns)
    assert exported.loc[exported["metric"] == "test_elbo", "superseded"].sum() == 1


def test_na_rows_of_attributes_the_dataset_lacks_are_dropped(tmp_path: Path) -> None:
    folder = fake_run(tmp_path, "smoke-dynamic-seed0-aaaaaa", 0, -500.0)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["not_applicable"] = {
        "edit_slope_thickness": "dataset 'synthetic' has no attributes to edit: use a *-morpho dataset",
        "test_iwae": "no encoder: add encode(x) -> Distribution"}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    df = genbench.load_results(tmp_path)
    assert "edit_slope_thickness" not in set(df["metric"])
    assert df.set_index("metric").loc["test_iwae", "na_reason"].startswith("no encoder")
