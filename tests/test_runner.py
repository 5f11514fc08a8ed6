"""The runner: run folders, resume after Ctrl-C and after a kill, skip, --force, locks,
failure isolation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from interrupt import interrupt_at_batch

from genbench import store
from genbench.data import DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.training import RunSpec, execute, plan_run


@pytest.fixture(scope="module")
def synthetic():
    from genbench.plugins import load_plugins

    load_plugins()
    return load_dataset(DataRequest("synthetic"))


def _spec(results: Path, **changes) -> RunSpec:
    base = dict(model="vae", dataset="synthetic", preset="smoke", seed=3, epochs=3,
                results=results, device="cpu", metrics=("elbo",))
    base.update(changes)
    return RunSpec(**base)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / store.CHECKPOINT, weights_only=True)["model"]


def test_run_folder_layout(tmp_path: Path, synthetic) -> None:
    outcome = execute(plan_run(_spec(tmp_path), synthetic))
    assert outcome.status == "finished", outcome.message
    folder = outcome.run_dir
    assert folder.parent.parent.name == "synthetic" and folder.parent.name == "vae"
    for name in ("config.json", "metrics.json", "history.csv", "checkpoint.pt", "samples.png",
                 "reconstructions.png", "samples/epoch_003.png"):
        assert (folder / name).exists(), name
    config = json.loads((folder / "config.json").read_text())
    assert config["preset"]["name"] == "smoke" and config["preset"]["epochs"] == 3
    assert config["dataset"]["splits"] == {"train": 400, "val": 100, "test": 100}
    assert config["model_config"]["latent_dim"] == 8 and config["seed"] == 3
    assert set(config["versions"]) >= {"genbench", "torch", "python"}
    history = (folder / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,seconds,images_per_s") and len(history) == 4
    assert not (folder / ".lock").exists()


def test_interrupted_run_resumes_to_the_same_parameters(tmp_path: Path, synthetic) -> None:
    straight = execute(plan_run(_spec(tmp_path / "a"), synthetic))
    plan = plan_run(_spec(tmp_path / "b"), synthetic)
    interrupt_at_batch(plan, 10)  # Ctrl-C in the middle of the second epoch
    with pytest.raises(KeyboardInterrupt):
        execute(plan)
    assert store.read_json(plan.run_dir / "metrics.json")["status"] == "interrupted"
    state = torch.load(plan.run_dir / store.CHECKPOINT, weights_only=True)
    assert state["progress"]["epoch"] == 1 and state["progress"]["step"] == 2
    resumed = execute(plan_run(_spec(tmp_path / "b"), synthetic))
    assert resumed.status == "finished"
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["test_elbo"] == straight.metrics["test_elbo"]


def test_finished_run_is_skipped_and_force_reruns(tmp_path: Path, synthetic) -> None:
    first = execute(plan_run(_spec(tmp_path, epochs=1), synthetic))
    again = execute(plan_run(_spec(tmp_path, epochs=1), synthetic))
    assert again.status == "skipped" and "--force" in again.message
    forced = execute(plan_run(_spec(tmp_path, epochs=1, force=True), synthetic))
    assert forced.status == "finished" and forced.run_dir == first.run_dir


def test_seeds_and_settings_get_their_own_folders(tmp_path: Path, synthetic) -> None:
    dirs = {plan_run(_spec(tmp_path, **c), synthetic).run_dir for c in
            ({}, {"seed": 4}, {"overrides": {"latent_dim": "4"}}, {"epochs": 2})}
    assert len(dirs) == 4


def test_live_lock_refuses_a_second_writer(tmp_path: Path, synthetic) -> None:
    plan = plan_run(_spec(tmp_path), synthetic)
    plan.run_dir.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (plan.run_dir / ".lock").write_text(str(sleeper.pid))
        with pytest.raises(GenbenchError, match="being written by process"):
            execute(plan)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert execute(plan).status == "finished"  # the stale lock of a dead process is taken over


def test_non_finite_loss_fails_the_run_only(tmp_path: Path, synthetic) -> None:
    bad = execute(plan_run(_spec(tmp_path, overrides={"lr": "1e30"}, epochs=2), synthetic))
    assert bad.status == "failed" and "non-finite" in bad.metrics["reason"]
    good = execute(plan_run(_spec(tmp_path, model="ae", epochs=1), synthetic))
    assert good.status == "finished"


def _cli(results: Path, epochs: int) -> list[str]:
    return [sys.executable, "-m", "genbench", "run", "vae", "--dataset", "synthetic", "--preset",
            "smoke", "--epochs", str(epochs), "--seed", "5", "--device", "cpu", "--results",
            str(results), "--metrics", "elbo"]


def test_killed_process_resumes_to_the_same_parameters(tmp_path: Path) -> None:
    env = {**os.environ, "GENBENCH_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run(_cli(tmp_path / "a", 40), check=True, capture_output=True, env=env, timeout=240)
    proc = subprocess.Popen(_cli(tmp_path / "b", 40), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    history = None
    while time.time() < deadline:
        found = list((tmp_path / "b").glob("*/*/*/history.csv"))
        if found and len(found[0].read_text().splitlines()) >= 4:  # three epochs done
            history = found[0]
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert history is not None, "the run never checkpointed"
    killed_at = len(history.read_text().splitlines()) - 1
    assert killed_at < 40, "the run finished before it could be killed"
    out = subprocess.run(_cli(tmp_path / "b", 40), capture_output=True, text=True, env=env,
                         timeout=240)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stdout
    a = _weights(next((tmp_path / "a").glob("*/*/*")))
    b = _weights(history.parent)
    assert all(torch.equal(a[k], b[k]) for k in a)
