"""Reference statistics (`genbench stats`): cached real feature sets that every number reads
bit-identically, refused when made for another split, variant or preprocessing, and
pytorch-fid's mu/sigma files accepted for FID only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genbench
from genbench.cli import app
from genbench.metrics import quality, reference
from tests.test_score import NUMBERS, _data, _floor_images

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(*args: str):
    return CliRunner().invoke(app, [*args, "--device", "cpu"], env={"COLUMNS": "200"})


def _score(samples, results: Path, **kw):
    return genbench.score(samples, dataset="synthetic", name="outside", preset="smoke",
                          results=results, device="cpu", **kw).metrics


@pytest.fixture()
def fresh_cache(tmp_path, monkeypatch):
    """A private cache: stats made here reach no other test."""
    import shutil

    from genbench.metrics.features import default_cache_dir

    cache = tmp_path / "cache"
    shutil.copytree(default_cache_dir() / "features", cache / "features", dirs_exist_ok=True) \
        if (default_cache_dir() / "features").exists() else None
    monkeypatch.setenv("GENBENCH_CACHE", str(cache))
    return cache


def test_stats_are_read_instead_of_computed_and_change_no_number(tmp_path, fresh_cache, monkeypatch):
    samples = _floor_images(_data()).flip(-1)  # mirrored digits: not the floor
    before = _score(samples, tmp_path / "before")
    out = _cli("stats", "synthetic", "--preset", "smoke", "--out", str(tmp_path / "ref.npz"))
    assert out.exit_code == 0, out.output
    assert len(list((fresh_cache / "stats").glob("*.npz"))) == 3  # reference, floor, memorization
    shared = reference.load(tmp_path / "ref.npz")
    assert shared.key["split"] == "test" and shared.key["dataset"] == "synthetic"
    assert shared.mu.dtype == torch.float64 and shared.sigma.shape == (shared.mu.shape[0],) * 2

    def no_real_features(*args, **kwargs):
        raise AssertionError("a real feature set was computed although it is cached")

    monkeypatch.setattr(quality, "fixed_subset", no_real_features)
    after = _score(samples, tmp_path / "after")  # a new results folder: its floor recomputed too
    assert not after.get("not_applicable"), after.get("not_applicable")
    assert {k: after[k] for k in NUMBERS} == {k: before[k] for k in NUMBERS}
    assert {k: after[k] for k in after if k.startswith("floor_")} == \
        {k: before[k] for k in before if k.startswith("floor_")}
    given = _score(samples, tmp_path / "given", reference_stats=tmp_path / "ref.npz")
    assert {k: given[k] for k in NUMBERS} == {k: before[k] for k in NUMBERS}


def test_stats_of_another_split_variant_or_preprocessing_are_refused(tmp_path, fresh_cache):
    made = genbench_stats(tmp_path)
    test_set, train_set = made[0][0], made[1][0]
    cases = {"train": (train_set.key, "split is 'train'.*'test'"),
             "preprocessing": ({**test_set.key, "preprocessing": "bilinear to 32x32"},
                               "preprocessing is 'bilinear to 32x32'")}
    cont = genbench_stats(tmp_path, variant="continuous")[0][0]
    cases["variant"] = (cont.key, "variant is 'continuous'.*'dynamic'")
    for name, (key, match) in cases.items():
        path = tmp_path / f"{name}.npz"
        reference.save(reference.ReferenceSet(key, test_set.features, test_set.logits, test_set.mu,
                                              test_set.sigma), path)
        out = _cli("score", str(tmp_path / "samples.pt"), "--dataset", "synthetic", "--name", "x",
                   "--preset", "smoke", "--results", str(tmp_path / "r"), "--reference-stats", str(path))
        assert out.exit_code == 2, (name, out.output)
        line, = out.output.strip().splitlines()
        assert re.search(match, line), (name, line)
        assert not (tmp_path / "r").exists()


def genbench_stats(tmp_path: Path, variant: str | None = None):
    from genbench.scoring import make_stats

    torch.save(_floor_images(_data()), tmp_path / "samples.pt")
    return make_stats("synthetic", preset="smoke", variant=variant, device="cpu")


def test_pytorch_fid_statistics_give_fid_only_and_say_so(tmp_path, fresh_cache):
    made = genbench_stats(tmp_path)
    ref = made[0][0]
    np.savez(tmp_path / "fid_stats.npz", mu=ref.mu.numpy(), sigma=ref.sigma.numpy())
    out = _cli("score", str(tmp_path / "samples.pt"), "--dataset", "synthetic", "--name", "fid-only",
               "--preset", "smoke", "--results", str(tmp_path / "r"),
               "--reference-stats", str(tmp_path / "fid_stats.npz"))
    assert out.exit_code == 0, out.output
    assert "FID only" in out.output
    fid_only = json.loads(next((tmp_path / "r").glob("synthetic/fid-only/*/metrics.json")).read_text())
    assert "kid" not in fid_only and "FID only" in fid_only["not_applicable"]["kid"]
    assert fid_only["fid"] == pytest.approx(_score(_floor_images(_data()), tmp_path / "f")["fid"],
                                            rel=1e-6, abs=1e-9)
    assert fid_only["fid"] > 0
    np.savez(tmp_path / "wide.npz", mu=np.zeros(2048), sigma=np.eye(2048))
    out = _cli("score", str(tmp_path / "samples.pt"), "--dataset", "synthetic", "--name", "wide",
               "--preset", "smoke", "--results", str(tmp_path / "r2"),
               "--reference-stats", str(tmp_path / "wide.npz"))
    assert out.exit_code == 2 and "2048-d" in out.output and not (tmp_path / "r2").exists()
