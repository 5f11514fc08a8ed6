"""Faults a user of a benchmark suite hits (issue 12): Ctrl-C then resume, locks, bad
settings, unreadable files, failing metrics, non-finite samples. Each fault ends in one line
(no traceback) with the documented exit code, and results written before stay intact."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genbench import store

HERE = Path(__file__).parent
SMOKE = ["--dataset", "synthetic", "--preset", "smoke", "--device", "cpu"]


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", **extra}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
    return env


def _child(point: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`genbench ARGS` in a subprocess that sends itself a real SIGINT at ``point``."""
    return subprocess.run([sys.executable, str(HERE / "sigint_child.py"), point, *args],
                          cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


def _one_line(text: str) -> str:
    """The error output is one line, without a traceback; returns it."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert "Traceback" not in text, text
    assert len(lines) == 1, text
    return lines[0]


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flat(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _flat(v, f"{prefix}/{i}")
    else:
        yield prefix, obj


TIMINGS = ("seconds", "images_per_s")


def _run_state(folder: Path) -> dict:
    """Everything a run folder holds, timings left out: checkpoint entries, metrics, history."""
    ckpt = dict(_flat(torch.load(folder / store.CHECKPOINT, weights_only=True)))
    metrics = json.loads((folder / store.METRICS).read_text())
    with open(folder / store.HISTORY) as f:
        history = [{k: v for k, v in row.items() if k not in TIMINGS} for row in csv.DictReader(f)]
    return {
        "checkpoint": {k: v for k, v in ckpt.items() if not any(t in k for t in TIMINGS)},
        "metrics": {k: v for k, v in metrics.items() if "seconds" not in k},
        "history": history,
        "samples.png": (folder / "samples.png").read_bytes(),
    }


def _assert_identical(a: dict, b: dict) -> None:
    assert a["checkpoint"].keys() == b["checkpoint"].keys()
    for key, value in a["checkpoint"].items():
        other = b["checkpoint"][key]
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, other), key
        else:
            assert value == other, key
    assert a["metrics"] == b["metrics"]
    assert a["history"] == b["history"]
    assert a["samples.png"] == b["samples.png"]


# -- 1: Ctrl-C then resume is exact ------------------------------------------------------
def test_sigint_at_five_points_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """Real SIGINTs to a `genbench run` subprocess: right after an optimizer step inside a
    training step (mid-epoch and on an epoch's last step), inside the epoch-end sample grid,
    mid-epoch again, and inside evaluation. Each rerun resumes; the end state equals an
    uninterrupted run's, bit for bit (3 epochs of 7 steps)."""
    args = ["run", "vae", *SMOKE, "--epochs", "3", "--seed", "1"]
    ref = _child("none", [*args, "--results", "ref"], tmp_path)
    assert ref.returncode == 0, ref.stdout + ref.stderr
    points = ["step:3", "step:4", "grid:1", "step:10", "metric:iwae"]
    for point in points:
        out = _child(point, [*args, "--results", "chain"], tmp_path)
        assert out.returncode == 130, (point, out.stdout, out.stderr)
        assert "interrupted" in _one_line(out.stderr)
        status = json.loads(next((tmp_path / "chain").glob("synthetic/vae/*/metrics.json")).read_text())
        assert status["status"] == "interrupted", point
    last = _child("none", [*args, "--results", "chain"], tmp_path)
    assert last.returncode == 0, last.stdout + last.stderr
    assert "resuming evaluation" in last.stdout and "at epoch 4" not in last.stdout
    (a,), (b,) = (list((tmp_path / r).glob("synthetic/vae/*")) for r in ("ref", "chain"))
    _assert_identical(_run_state(a), _run_state(b))
