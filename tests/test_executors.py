"""Executors on real engines (no mocks): one local Ray for the session, submitit's local
executor. A sweep through Ray equals the same sweep run here, run folder by run folder; a
sharded evaluation equals the unsharded one bit for bit; a worker SIGKILLed mid-run costs
only that run (retried from its checkpoint, or marked failed); a killed driver's sweep
resumes to the numbers of an uninterrupted one."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console
from run_folders import make_vae_run
from typer.testing import CliRunner

from genbench import store
from genbench.errors import GenbenchError
from genbench.executors import RayOptions, RunOptions, SlurmOptions, check_options, options_for
from genbench.runs import RunRequest, run_all

pytestmark = pytest.mark.usefixtures("one_thread", "plugins_loaded")
RAY = RayOptions(cpus_per_run=1, max_retries=2, live=False)


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


def _sweep(results: Path, executor: RunOptions | None, models=("vae", "ae"), seeds=(0, 1),
           epochs: int | None = None, metrics=("elbo", "iwae")) -> list:
    request = RunRequest(tuple(models), dataset="synthetic", preset="smoke", epochs=epochs,
                         seeds=tuple(seeds), device="cpu", results=results, metrics=tuple(metrics),
                         command="genbench run (test)", executor=executor)
    return run_all(request, _quiet())


def _tensors_equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _tensors_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _tensors_equal(x, y, f"{where}[{i}]")
    elif not any(s in where for s in ("seconds", "images_per_s")):
        assert a == b, where


def _history(folder: Path) -> list[dict[str, str]]:
    with open(folder / store.HISTORY) as f:
        return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")}
                for row in csv.DictReader(f)]


def assert_same_run(a: Path, b: Path) -> None:
    """Checkpoint tensors, metrics and history equal (seconds and rates excepted)."""
    ca = torch.load(a / store.CHECKPOINT, weights_only=True)
    cb = torch.load(b / store.CHECKPOINT, weights_only=True)
    _tensors_equal(ca, cb, str(a))
    ma, mb = (store.read_json(f / store.METRICS) for f in (a, b))
    drop = re.compile(r"seconds")
    assert {k: v for k, v in ma.items() if not drop.search(k)} == \
        {k: v for k, v in mb.items() if not drop.search(k)}
    assert ma["status"] == "finished"
    assert _history(a) == _history(b)


def _run_dirs(outcomes) -> dict[str, Path]:
    return {"/".join(o.run_dir.parts[-3:]): o.run_dir for o in outcomes}


# -- checks before anything is submitted ---------------------------------------------------------
def test_bad_executor_options_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from genbench.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["run", "vae", "-d", "synthetic", "-p", "smoke", "--executor", "rey",
                              "--results", str(tmp_path)])
    assert res.exit_code == 2 and "unknown executor 'rey'" in res.output and "ray" in res.output
    # a flag of another executor names the one that takes it (read off the options' fields)
    with pytest.raises(GenbenchError, match=r"--eval-shards needs --executor ray \(the shards are Ray"):
        options_for("local", eval_shards=2)
    with pytest.raises(GenbenchError, match="--slurm-partition needs --executor slurm"):
        options_for("ray", partition="gpu")
    assert options_for("ray", eval_shards=1, partition=None) == RayOptions()  # defaults are not "given"
    with pytest.raises(GenbenchError, match="--cpus-per-run 0: must be at least 1"):
        check_options(RayOptions(cpus_per_run=0))
    with pytest.raises(GenbenchError, match="--max-retries -1: cannot be negative"):
        check_options(RayOptions(max_retries=-1))
    with pytest.raises(GenbenchError, match="slurm-time"):
        check_options(SlurmOptions(time_limit="soon"))
    # the extra is missing: one line naming it (find_spec answers as on a machine without ray)
    import genbench.executors.base as ex

    real = ex.importlib.util.find_spec
    monkeypatch.setattr(ex.importlib.util, "find_spec", lambda n: None if n == "ray" else real(n))
    with pytest.raises(GenbenchError, match=r'pip install "genbench\[ray\]"'):
        check_options(RayOptions())
    monkeypatch.undo()
    assert not list(tmp_path.iterdir())  # nothing was written


def test_unreachable_address_fails_fast(tmp_path: Path) -> None:
    from genbench.executors.ray_exec import connect

    start = time.perf_counter()
    with pytest.raises(GenbenchError, match="cannot reach 127.0.0.1:9"):
        connect(RayOptions(address="ray://127.0.0.1:9"))
    with pytest.raises(GenbenchError, match="expected auto, host:port"):
        connect(RayOptions(address="nowhere"))
    assert time.perf_counter() - start < 15


def test_gpus_on_a_cluster_without_gpus(tmp_path: Path, ray_cluster) -> None:
    with pytest.raises(GenbenchError, match="--gpus-per-run 1: the Ray cluster has no GPUs"):
        _sweep(tmp_path, RAY.replace(gpus_per_run=1.0), models=("vae",), seeds=(0,))
    from genbench.executors.ray_exec import gpus_per_run

    assert gpus_per_run(RayOptions(), {"CPU": 2.0}) == 0.0  # the default follows the cluster
    assert gpus_per_run(RayOptions(), {"CPU": 8.0, "GPU": 2.0}) == 1.0
    assert not (tmp_path / "synthetic").exists()


# -- a sweep through Ray equals the local sweep ---------------------------------------------------
def test_ray_sweep_equals_local_sweep(tmp_path: Path, ray_cluster) -> None:
    local = _sweep(tmp_path / "local", None)
    remote = _sweep(tmp_path / "ray", RAY.replace(eval_shards=2))  # IWAE sharded inside the runs
    assert [o.status for o in remote] == ["finished"] * 4
    a, b = _run_dirs(local), _run_dirs(remote)
    assert a.keys() == b.keys() and len(a) == 4
    for key in a:
        assert_same_run(a[key], b[key])
        assert not (b[key] / ".progress.json").exists()
    again = _sweep(tmp_path / "ray", RAY)  # rerun: every run is skipped as finished
    assert [o.status for o in again] == ["skipped"] * 4


def test_a_run_held_by_another_driver_is_busy_and_untouched_on_ray(tmp_path: Path, ray_cluster) -> None:
    """The worker finds the run locked by a process on another host: the run is reported busy
    and nothing is written into the folder that process holds."""
    first = _run_dirs(_sweep(tmp_path, None, seeds=(0,), metrics=("elbo",)))
    held = next(d for k, d in first.items() if "/vae/" in f"/{k}")
    (held / store.METRICS).unlink()  # unfinished, so the sweep wants it again
    (held / store.LOCK).write_text(json.dumps({"host": "node-17.cluster", "pid": 12345, "start": 99}))
    before = sorted(p.name for p in held.iterdir())
    outcomes = {o.run_dir: o.status for o in _sweep(tmp_path, RAY, seeds=(0,), metrics=("elbo",))}
    assert outcomes[held] == "busy" and sorted(outcomes.values()) == ["busy", "skipped"]
    assert sorted(p.name for p in held.iterdir()) == before  # no metrics.json written into it


# -- sharded evaluation -------------------------------------------------------------------------
def test_sharded_likelihoods_equal_unsharded_bit_for_bit(tmp_path: Path, ray_cluster) -> None:
    from genbench.evaluation import load_run, sharded
    from genbench.executors.ray_exec import RaySharder
    from genbench.metrics.ais import HMCConfig, ais_log_likelihood
    from genbench.metrics.bdmc import bdmc
    from genbench.metrics.iwae import iwae_bound
    from genbench.metrics.obsmodel import ObservationModel
    from genbench.metrics.shards import map_images, map_subsets, split

    assert split(12, 3) == [(0, 4), (4, 8), (8, 12)] and split(10, 3) == [(0, 5), (5, 10)]
    assert split(6, 2) == [(0, 6)] and split(10, 3, align=4) == [(0, 8), (8, 10)]  # >= 4 images, aligned
    folder = make_vae_run(tmp_path / "synthetic" / "vae" / "run")
    run = load_run(folder)
    model, x = run.model, run.data.eval_x("test", 10)
    obs, hmc = ObservationModel("decoder"), HMCConfig(leapfrog=5)

    def compute():
        return (map_images(iwae_bound, model, x, None, k=16, seed=5, chunk=8, obs=obs),
                map_images(ais_log_likelihood, model, x, None, obs=obs, chains=4, steps=20, hmc=hmc, seed=7),
                map_subsets(bdmc, model, obs=obs, n=8, shape=run.data.info.shape, chains=4, steps=20,
                            hmc=hmc, seed=3, from_encoder=True))

    iwae, (ais, accept), bd = compute()
    with sharded(RaySharder(folder, "cpu", None, (), {}, 1, 2)):
        iwae3, (ais3, accept3), bd3 = compute()
    assert torch.equal(iwae, iwae3) and torch.equal(ais, ais3)  # per image, bit for bit
    assert torch.equal(bd.lower, bd3.lower) and torch.equal(bd.upper, bd3.upper) and torch.equal(bd.x, bd3.x)
    assert accept3 == pytest.approx(accept, rel=1e-12)
    # a shard really is a part: images 5..9 told their offset draw what they draw in the whole
    assert torch.equal(iwae_bound(model, x[5:], k=16, seed=5, chunk=8, obs=obs, offset=5), iwae[5:])
    assert not torch.equal(iwae_bound(model, x[5:], k=16, seed=5, chunk=8, obs=obs), iwae[5:])


def test_genbench_eval_sharded_equals_unsharded(tmp_path: Path, ray_cluster) -> None:
    from genbench.cli import app

    folders = [make_vae_run(tmp_path / d / "synthetic" / "vae" / "smoke-dynamic-seed0-abc") for d in "ab"]
    for f in folders:
        store.update_metrics(f, {"status": "finished"})
    runner = CliRunner()
    names = "iwae,ais,bdmc"
    res = runner.invoke(app, ["eval", str(folders[0]), "--metrics", names, "--device", "cpu"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["eval", str(folders[1]), "--metrics", names, "--device", "cpu",
                              "--executor", "ray", "--eval-shards", "2"])
    assert res.exit_code == 0, res.output
    m0, m1 = (store.read_json(f / store.METRICS) for f in folders)
    keys = [k for k in m0 if k.startswith(("test_iwae", "test_ais", "bdmc_gap", "bdmc_lower", "bdmc_upper"))]
    assert "test_iwae_stderr" in keys and "test_ais" in keys and "bdmc_gap" in keys
    for k in keys:
        assert m0[k] == m1[k], k  # mean and standard error: exactly the unsharded numbers
    p0, p1 = (f / "per_image.json" for f in folders)
    if p0.exists():
        assert json.loads(p0.read_text()) == json.loads(p1.read_text())


# -- a worker killed mid-run ---------------------------------------------------------------------
def _lock_pid(folder: Path) -> int | None:
    try:
        text = (folder / store.LOCK).read_text()
    except OSError:
        return None
    try:
        data = json.loads(text)
        if isinstance(data, dict) and "pid" in data:
            return int(data["pid"])
    except ValueError:
        pass
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None


def _kill_when_training(folder: Path, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the process holding ``folder``'s lock once a checkpoint is saved."""
    while not stop.is_set():
        pid = _lock_pid(folder)
        if pid and pid != os.getpid() and (folder / store.CHECKPOINT).exists():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.005)


def _plan_dir(results: Path, model: str, seed: int, epochs: int) -> Path:
    from genbench.plugins import load_plugins
    from genbench.training import RunSpec, plan_run

    load_plugins()
    spec = RunSpec(model=model, dataset="synthetic", preset="smoke", seed=seed, epochs=epochs, device="cpu",
                   results=results, metrics=("elbo",))
    return plan_run(spec).run_dir


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory: pytest.TempPathFactory, plugins_loaded) -> Path:
    """vae seed 0, 8 smoke epochs, run here uninterrupted: what the killed runs must equal."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            out = _sweep(tmp_path_factory.mktemp("reference"), None, models=("vae",), seeds=(0,), epochs=8,
                         metrics=("elbo",))
        finally:
            torch.set_num_threads(threads)
    return out[0].run_dir


@pytest.mark.parametrize("retries", [1, 0])
def test_killed_worker_costs_only_its_run(tmp_path: Path, ray_cluster, retries: int,
                                         local_reference: Path) -> None:
    results, epochs = tmp_path / "ray", 8
    victim = _plan_dir(results, "vae", 0, epochs)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_when_training, args=(victim, killed, stop), daemon=True)
    killer.start()
    try:
        out = _sweep(results, RAY.replace(max_retries=retries), models=("vae",), seeds=(0, 1),
                     epochs=epochs, metrics=("elbo",))
    finally:
        stop.set()
    assert killed, "the run finished before it could be killed"
    status = {o.run_dir: o for o in out}
    other = [o for o in out if o.run_dir != victim]
    assert [o.status for o in other] == ["finished"]  # the other run is untouched
    if retries:
        assert status[victim].status == "finished"  # retried, resumed from its checkpoint
        assert_same_run(local_reference, victim)  # bit-identical to an uninterrupted run
    else:
        assert status[victim].status == "failed"
        reason = store.read_json(victim / store.METRICS)["reason"]
        assert "worker died" in reason and "resume" in reason
        assert (victim / store.CHECKPOINT).exists()  # the next command resumes from here


# -- the driver killed: the same command resumes ------------------------------------------------
def test_resume_after_the_driver_is_killed(tmp_path: Path, ray_cluster, local_reference: Path) -> None:
    results, epochs = tmp_path / "ray", 8
    address = ray_cluster.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "genbench", "run", "vae", "-d", "synthetic", "-p", "smoke", "--seed", "0",
           "--epochs", str(epochs), "--metrics", "elbo", "--device", "cpu", "--results", str(results),
           "--executor", "ray", "--address", address]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    folder = _plan_dir(results, "vae", 0, epochs)
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 90
        while not (folder / store.HISTORY).exists() and time.time() < deadline and driver.poll() is None:
            time.sleep(0.01)
        assert driver.poll() is None, "the driver ended before it could be killed"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.wait(30)
    deadline = time.time() + 60  # Ray ends a dead driver's tasks; wait until the lock is free
    while (pid := _lock_pid(folder)) is not None and time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    resumed = _sweep(results, RAY, models=("vae",), seeds=(0,), epochs=epochs, metrics=("elbo",))
    assert resumed[0].status in ("finished", "skipped")
    assert_same_run(local_reference, folder)


# -- SLURM through submitit's local executor -----------------------------------------------------
def test_slurm_job_array_on_submitit_local(tmp_path: Path) -> None:
    opts = SlurmOptions(cluster="local", time_limit="00:10:00", live=False)
    out = _sweep(tmp_path / "slurm", opts, models=("vae",), seeds=(0, 1), metrics=("elbo",))
    assert [o.status for o in out] == ["finished", "finished"]
    local = _sweep(tmp_path / "local", None, models=("vae",), seeds=(0, 1), metrics=("elbo",))
    for a, b in zip(local, out, strict=True):
        assert_same_run(a.run_dir, b.run_dir)
    assert list((tmp_path / "slurm" / "_slurm").iterdir())  # submitit's logs live beside the results


def test_slurm_dry_run_submits_nothing(tmp_path: Path) -> None:
    from genbench.cli import app

    res = CliRunner().invoke(app, ["run", "vae", "ae", "-d", "synthetic", "-p", "smoke", "--executor",
                                   "slurm", "--slurm-partition", "gpu", "--slurm-time", "12:00:00",
                                   "--dry-run", "--results", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "job array of 2 tasks" in res.output and "slurm_partition=gpu" in res.output
    assert "timeout_min=720" in res.output and "nothing submitted" in res.output
    assert not (tmp_path / "synthetic").exists() and not (tmp_path / "_slurm").exists()


def test_slurm_time_formats() -> None:
    from genbench.executors.slurm import parse_time

    assert [parse_time(t) for t in ("12:00:00", "90", "1-00", "1-02:30", "5:30")] == [720, 90, 1440, 1590, 6]
    with pytest.raises(GenbenchError):
        parse_time("1:2:3:4")


# -- the live view and --plan -------------------------------------------------------------------
def test_sweep_view_reads_the_run_folders(tmp_path: Path) -> None:
    from genbench.executors.live import SweepView
    from genbench.executors.task import FileReporter
    from genbench.training import RunOutcome

    dirs = [tmp_path / n for n in ("a", "b", "c", "d")]
    for d in dirs:
        d.mkdir()
    rep = FileReporter(dirs[1], steps_per_epoch=10, epochs=3, every=0.0)
    rep.start("b", total_steps=30, done_steps=10)
    rep.advance(5, 640, {"loss": 1.5})
    FileReporter(dirs[2], 10, 3).evaluation("c").start("iwae")
    buf = io.StringIO()
    view = SweepView(dirs, ["a", "b", "c", "d"], Console(file=buf, width=200), slots=2, every=0.0)
    view.finished(3, RunOutcome("failed", dirs[3], {}, "diverged: non-finite loss"))
    states = [view.row(i)[:2] for i in range(4)]
    assert states[0] == ("queued", "")
    assert states[1][0] == "training" and states[1][1].startswith("epoch 2/3")
    assert states[2] == ("evaluating", "evaluating iwae")
    assert states[3] == ("failed", "diverged: non-finite loss")
    with view:
        view.refresh()
    text = buf.getvalue()
    assert "1 queued" in text and "1 training" in text and "1 failed" in text and "ETA" in text
    rep.close()
    assert not (dirs[1] / ".progress.json").exists()


def test_plan_prints_costs_and_runs_nothing(tmp_path: Path) -> None:
    buf = io.StringIO()
    out = run_all(RunRequest(("vae", "gan"), dataset="synthetic", preset="smoke", seeds=(0, 1),
                             device="cpu", results=tmp_path), Console(file=buf, width=200), plan_only=True)
    assert out == []
    text = buf.getvalue()
    assert text.count("synthetic/dynamic seed") == 4 and "GFLOP/s" in text
    assert not list(tmp_path.iterdir())


def test_plan_counts_a_linear_decoder_exactly() -> None:
    from genbench.costs import _count

    layer = torch.nn.Linear(20, 30)
    assert _count(lambda: layer(torch.zeros(7, 20))) == 2 * 7 * 20 * 30


def test_plans_worst_case_follows_the_schedule_the_preset_runs() -> None:
    """Without a pilot every doubling runs and is pooled (paper: 1,000 to 16,000); with one,
    AIS runs once, at most at the longest doubling (quick: 1,000); a pilot longer than AIS's
    first schedule is off, as the metric has it."""
    from genbench.costs import _worst_steps
    from genbench.presets import get_preset

    assert _worst_steps(get_preset("paper")) == 1000 + 2000 + 4000 + 8000 + 16000
    assert _worst_steps(get_preset("quick")) == 1000
    assert _worst_steps(get_preset("quick").with_overrides(pilot_steps=600)) == 500 + 1000
