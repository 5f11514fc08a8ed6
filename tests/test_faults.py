"""Faults a user of a benchmark suite hits: Ctrl-C then resume, locks, bad
settings, unreadable files, failing metrics, non-finite samples. Each fault ends in one line
(no traceback) with the documented exit code, and results written before stay intact."""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import os
import shutil
import socket
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from genbench import store
from genbench.cli import app

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


@pytest.fixture
def ctrl_c_delivered():
    """Ctrl-C delivered as a terminal delivers it. A suite started in the background of a
    non-interactive shell inherits an ignored SIGINT (POSIX), which genbench rightly keeps
    (test_an_ignored_sigint_stays_ignored_during_training) and which would leave these tests
    nothing to interrupt; a handler, unlike SIG_IGN, is not inherited by the children."""
    import signal

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


# -- 1: Ctrl-C then resume is exact ------------------------------------------------------
@pytest.mark.usefixtures("ctrl_c_delivered")
def test_sigint_at_five_points_then_resume_is_bit_identical(tmp_path: Path) -> None:
    """Real SIGINTs to a `genbench run` subprocess: right after an optimizer step inside a
    training step (mid-epoch and on an epoch's last step), inside the epoch-end sample grid,
    mid-epoch again, and inside evaluation. Each rerun resumes; the end state equals an
    uninterrupted run's, bit for bit (3 epochs of 7 steps). Three metrics, the middle one
    interrupted: seven full evaluations would triple the test's time and test nothing more."""
    args = ["run", "vae", *SMOKE, "--epochs", "3", "--seed", "1", "--metrics", "elbo,iwae,ais"]
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


# -- shared fixtures for in-process CLI tests ------------------------------------------------
runner = CliRunner()


def _cli(*args: str):
    out = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert out.exception is None or isinstance(out.exception, SystemExit), (
        "".join(traceback.format_exception(out.exception)))
    return out


def _cli_error(*args: str, code: int = 2) -> str:
    """Run the CLI expecting one error line and ``code``; returns the line."""
    out = _cli(*args)
    assert out.exit_code == code, out.output
    return _one_line(out.stderr)


def _busy_line(out) -> str:
    """`genbench run` went on past a busy run: exit 1 and one line about it, no traceback."""
    assert out.exit_code == 1, out.output
    assert "Traceback" not in out.output
    (line,) = [ln for ln in out.output.splitlines() if "skipped (busy)" in ln]
    return line


RUN = ["run", "vae", *SMOKE, "--epochs", "1", "--metrics", "elbo"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished smoke run (results root); tests copy it."""
    root = tmp_path_factory.mktemp("finished") / "results"
    out = _cli(*RUN, "--results", str(root))
    assert out.exit_code == 0, out.output
    return root


@pytest.fixture
def results(finished_run: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(results root, run folder): a private copy of the finished run."""
    root = tmp_path / "results"
    shutil.copytree(finished_run, root)
    (folder,) = root.glob("synthetic/vae/*")
    return root, folder


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def _lock(folder: Path, **holder) -> None:
    (folder / store.LOCK).write_text(json.dumps(holder))


# -- 2: locks record host, PID and start time; eval respects them -----------------------------
def test_lock_records_host_pid_and_start_time(tmp_path: Path) -> None:
    with store.locked(tmp_path / "run"):
        holder = store.read_lock(tmp_path / "run" / store.LOCK)
    assert holder["host"] == socket.gethostname() and holder["pid"] == os.getpid()
    if Path("/proc/self/stat").exists():
        assert holder["start"] == store.process_start(os.getpid()) is not None
    assert not (tmp_path / "run" / store.LOCK).exists()


def test_lock_of_a_live_process_on_this_host_refuses(results) -> None:
    root, folder = results
    with _sleeper() as sleeper:
        try:
            _lock(folder, host=socket.gethostname(), pid=sleeper.pid,
                  start=store.process_start(sleeper.pid))
            line = _busy_line(_cli(*RUN, "--results", str(root), "--force"))
        finally:
            sleeper.kill()
    assert f"process {sleeper.pid}" in line and "wait for it or stop it" in line


def test_reused_pid_with_another_start_time_is_stale(results) -> None:
    root, folder = results
    before = (folder / store.METRICS).read_text()
    # a live PID (this test's process) whose recorded start time is not its own: after a
    # reboot or in another container the PID belongs to someone else
    _lock(folder, host=socket.gethostname(), pid=os.getpid(), start=1)
    out = _cli(*RUN, "--results", str(root), "--force")
    assert out.exit_code == 0, out.output
    assert json.loads((folder / store.METRICS).read_text())["status"] == "finished"
    assert not (folder / store.LOCK).exists() and before


def test_lock_from_another_host_is_never_stolen_and_says_how_to_clear(results) -> None:
    root, folder = results
    before = (folder / store.METRICS).read_text()
    _lock(folder, host="node-17.cluster", pid=12345, start=99)
    line = _busy_line(_cli(*RUN, "--results", str(root), "--force"))
    assert "node-17.cluster" in line and f"genbench unlock {folder}" in line
    assert (folder / store.METRICS).read_text() == before  # --force cleared nothing
    assert json.loads((folder / store.LOCK).read_text())["host"] == "node-17.cluster"
    out = _cli("unlock", str(folder))
    assert out.exit_code == 0 and "removed" in out.output and not (folder / store.LOCK).exists()


def test_unlock_refuses_a_live_holder_on_this_host(results) -> None:
    _, folder = results
    _lock(folder, host=socket.gethostname(), pid=os.getpid(), start=store.process_start(os.getpid()))
    if store.process_start(os.getpid()) is None:
        pytest.skip("no /proc: start times unknown")
    assert "in use" in _cli_error("unlock", str(folder))
    assert (folder / store.LOCK).exists()


def test_no_space_for_the_lock_is_one_line_and_leaves_no_lock(tmp_path: Path, monkeypatch) -> None:
    def full(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(store, "_write_lock", full)
    line = _cli_error(*RUN, "--results", str(tmp_path / "r"))
    assert "No space left on device" in line
    assert not list((tmp_path / "r").rglob(store.LOCK))


def test_busy_run_is_skipped_and_the_others_go_on(results) -> None:
    root, folder = results
    _lock(folder, host="node-17.cluster", pid=12345, start=99)
    out = _cli("run", "vae", "ae", *SMOKE, "--epochs", "1", "--metrics", "elbo,recon",
               "--results", str(root), "--force")
    assert "node-17.cluster" in _busy_line(out)
    (ae,) = root.glob("synthetic/ae/*")
    assert json.loads((ae / store.METRICS).read_text())["status"] == "finished"


def test_eval_refuses_an_unfinished_run(results) -> None:
    root, folder = results
    store.update_metrics(folder, {"status": "running"})
    before = (folder / store.METRICS).read_text()
    line = _cli_error("eval", str(folder), "--metrics", "recon", "--device", "cpu")
    assert "not finished" in line and "--allow-unfinished" in line
    assert (folder / store.METRICS).read_text() == before
    out = _cli("eval", str(folder), "--metrics", "recon", "--device", "cpu", "--allow-unfinished")
    assert out.exit_code == 0, out.output
    assert "recon_bce" in json.loads((folder / store.METRICS).read_text())


def test_eval_refuses_a_run_held_by_a_live_process(results) -> None:
    root, folder = results
    before = (folder / store.METRICS).read_text()
    with _sleeper() as sleeper:
        try:
            _lock(folder, host=socket.gethostname(), pid=sleeper.pid,
                  start=store.process_start(sleeper.pid))
            line = _cli_error("eval", str(folder), "--metrics", "recon", "--device", "cpu",
                              "--allow-unfinished")
        finally:
            sleeper.kill()
    assert "in use" in line and str(sleeper.pid) in line
    assert (folder / store.METRICS).read_text() == before


def test_eval_holds_the_lock_while_it_writes(results, monkeypatch) -> None:
    root, folder = results
    seen = []
    original = store.update_metrics

    def spy(f, values):
        seen.append(store.read_lock(Path(f) / store.LOCK).get("pid"))
        return original(f, values)

    monkeypatch.setattr(store, "update_metrics", spy)
    out = _cli("eval", str(folder), "--metrics", "recon", "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert seen == [os.getpid()] and not (folder / store.LOCK).exists()


# -- 3: stale temp files, umask ---------------------------------------------------------------
def test_stale_temp_files_are_removed_when_the_folder_is_next_locked(results) -> None:
    root, folder = results
    stale = [folder / ".metrics.json.k2j3.tmp", folder / "samples" / ".epoch_001.png.x9.tmp"]
    for path in stale:
        path.write_bytes(b"half")
    out = _cli("eval", str(folder), "--metrics", "recon", "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert not any(p.exists() for p in stale)
    assert (folder / "samples" / "epoch_001.png").exists()


def test_result_files_respect_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        out = _cli(*RUN, "--results", str(tmp_path / "r"))
    finally:
        os.umask(old)
    assert out.exit_code == 0, out.output
    (folder,) = (tmp_path / "r").glob("synthetic/vae/*")
    for name in (store.METRICS, store.CONFIG, store.CHECKPOINT, store.HISTORY, "samples.png"):
        assert (folder / name).stat().st_mode & 0o777 == 0o644, name


# -- 4: settings are range-checked before anything runs -------------------------------------------
@pytest.mark.parametrize("setting, phrase", [
    ("epochs=0", "epochs must be at least 1"),
    ("latent_dim=0", "latent_dim must be at least 1"),
    ("latent_dim=-3", "latent_dim must be at least 1"),
    ("max_train=-5", "max_train must be at least 1"),
    ("batch_size=0", "batch_size must be at least 1"),
    ("iwae_k=0", "iwae_k must be at least 1"),
    ("lr=nan", "lr must be a finite number"),
    ("lr=0", "lr must be above 0"),
])
def test_bad_settings_exit_2_before_anything_runs(tmp_path: Path, setting: str, phrase: str) -> None:
    line = _cli_error("run", "vae", *SMOKE, "--metrics", "elbo", "--results", str(tmp_path / "r"),
                      "--set", setting)
    assert line == f"error: --set {setting}: {phrase}" + line.split(phrase, 1)[1]
    assert not (tmp_path / "r").exists()  # nothing written


def test_declared_ranges_and_default_rules_for_plugins() -> None:
    from dataclasses import dataclass

    from genbench.errors import GenbenchError
    from genbench.presets import get_preset
    from genbench.settings import between, probability, resolve

    @dataclass(frozen=True)
    class Config:
        keep: float = probability(0.5)
        temperature: float = between(1.0, 0.1, 10.0)
        enc_hidden: tuple[int, ...] = (64, 32)
        seed_offset: int = -3  # no rule: any int

    smoke = get_preset("smoke")
    assert resolve(Config, {}, smoke, {"seed_offset": "-9"})[0].seed_offset == -9
    for setting, phrase in [("keep", "1.5"), ("temperature", "20"), ("enc_hidden", "(8,0)")]:
        with pytest.raises(GenbenchError, match=f"--set {setting}="):
            resolve(Config, {}, smoke, {setting: phrase})
    with pytest.raises(GenbenchError, match="Config's smoke preset keep=2.0: keep must be"):
        resolve(Config, {"smoke": {"keep": 2.0}}, smoke, {})


def test_a_key_some_models_lack_applies_where_it_exists(tmp_path: Path) -> None:
    out = _cli("run", "gan", "vae", *SMOKE, "--epochs", "1", "--metrics", "elbo,modes",
               "--results", str(tmp_path), "--set", "d_dropout=0.25", "--plan")
    assert out.exit_code == 0, out.output
    assert "--set d_dropout ignored by vae" in out.output
    assert "d_dropout" in _cli_error("run", "vae", *SMOKE, "--set", "d_dropout=0.25",
                                     "--results", str(tmp_path))
    assert "d_dropout must be in [0.0, 1.0]" in _cli_error(
        "run", "gan", "vae", *SMOKE, "--set", "d_dropout=2", "--results", str(tmp_path))


def test_results_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    assert "is under the file" in _cli_error(*RUN, "--results", str(tmp_path / "file" / "r"))
    assert "is a file" in _cli_error(*RUN, "--results", str(tmp_path / "file"))


# -- 5: unreadable checkpoints, caches and result files ---------------------------------------------
def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickled_code(path: Path) -> None:
    torch.save({"model": {}, "payload": Path("/")}, path)  # a non-tensor global: never loaded


@pytest.mark.parametrize("damage, phrase", [(_truncate, "is unreadable"),
                                            (_pickled_code, "not a plain tensor checkpoint")])
def test_a_bad_checkpoint_is_one_line_in_eval_and_gallery(results, damage, phrase) -> None:
    root, folder = results
    before = (folder / store.METRICS).read_text()
    damage(folder / store.CHECKPOINT)
    for args in (["eval", str(folder), "--metrics", "recon", "--device", "cpu"],
                 ["gallery", str(folder), "--kind", "samples", "--out", str(folder / "g.png")]):
        line = _cli_error(*args)
        assert str(folder / store.CHECKPOINT) in line and phrase in line, line
        assert "weights_only" not in line
    assert (folder / store.METRICS).read_text() == before


def test_report_on_a_bad_checkpoint_never_suggests_weights_only_false(results, tmp_path) -> None:
    root, folder = results
    _pickled_code(folder / store.CHECKPOINT)
    # the galleries are drawn where checkpoints are loaded; the report only places them
    drawn = _cli("gallery", "--results", str(root))
    assert drawn.exit_code == 0, drawn.output
    out = _cli("report", "--results", str(root), "--out", str(tmp_path / "rep"))
    assert out.exit_code == 0, out.output
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "not a plain tensor checkpoint" in drawn.output and "not a plain tensor checkpoint" in text
    assert "weights_only" not in text + out.output + drawn.output


def test_a_corrupt_evaluator_cache_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    from genbench.data import DataRequest, load_dataset
    from genbench.errors import GenbenchWarning
    from genbench.metrics.features import load_or_train_extractor

    data = load_dataset(DataRequest("synthetic"))
    first = load_or_train_extractor(data, epochs=1, cache_dir=tmp_path)
    assert first.trained and first.path.exists()
    first.path.write_bytes(b"\0" * 100)  # a disk error, a killed copy
    with pytest.warns(GenbenchWarning, match="rebuilding it") as caught:
        again = load_or_train_extractor(data, epochs=1, cache_dir=tmp_path)
    assert str(first.path) in str(caught[0].message) and len(str(caught[0].message).splitlines()) == 1
    assert again.trained and again.accuracy == first.accuracy
    assert not load_or_train_extractor(data, epochs=1, cache_dir=tmp_path).trained  # cached again


def test_report_skips_runs_whose_files_are_unreadable(results, tmp_path) -> None:
    root, folder = results
    bad_metrics = folder.parent / (folder.name + "-copy1")
    bad_config = folder.parent / (folder.name + "-copy2")
    shutil.copytree(folder, bad_metrics)
    shutil.copytree(folder, bad_config)
    (bad_metrics / store.METRICS).write_text('{"status": "finis')
    (bad_config / store.CONFIG).write_bytes(b'{"model": "\xff\xfe"}')
    out = _cli("report", "--results", str(root), "--out", str(tmp_path / "rep"), "--no-galleries")
    assert out.exit_code == 0, out.output
    assert "Traceback" not in out.output
    warnings = [ln for ln in out.stdout.splitlines() if ln.startswith("warning:")]
    assert warnings[0] == "warning: skipped 2 run(s) whose files are unreadable"
    assert any(str(bad_metrics / store.METRICS) in w for w in warnings)
    assert any(str(bad_config / store.CONFIG) in w for w in warnings)
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "Skipped 2 run(s)" in text and "from 1 runs" in text
    assert (folder / store.METRICS).exists()


# -- 6: tracebacks that became one line ------------------------------------------------------------
def test_report_out_a_file_is_one_line(results, tmp_path) -> None:
    root, _ = results
    (tmp_path / "taken").write_text("x")
    line = _cli_error("report", "--results", str(root), "--out", str(tmp_path / "taken"))
    assert "is a file" in line


def test_celeba_attribute_file_not_utf8_and_no_images_are_one_line(tmp_path: Path) -> None:
    from test_data import write_celeba

    write_celeba(tmp_path / "a")
    attrs = tmp_path / "a" / "celeba" / "list_attr_celeba.txt"
    attrs.write_bytes(attrs.read_bytes().replace(b"Attr_3", b"Attr\xef3"))
    line = _cli_error("run", "vae", "--dataset", "celeba", "--data-dir", str(tmp_path / "a"),
                      "--preset", "smoke", "--results", str(tmp_path / "r"))
    assert str(attrs) in line and "not UTF-8" in line
    empty = tmp_path / "b" / "celeba"
    (empty / "img_align_celeba").mkdir(parents=True)
    (empty / "list_attr_celeba.txt").write_text("0\n" + " ".join(f"A{i}" for i in range(40)) + "\n")
    (empty / "list_eval_partition.txt").write_text("")
    line = _cli_error("run", "vae", "--dataset", "celeba", "--data-dir", str(tmp_path / "b"),
                      "--preset", "smoke", "--results", str(tmp_path / "r"))
    assert "lists no images" in line
    assert not (tmp_path / "r").exists()


def test_an_explicit_data_dir_without_mnist_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    line = _cli_error("run", "vae", "--dataset", "mnist", "--data-dir", str(tmp_path / "empty"),
                      "--preset", "smoke", "--results", str(tmp_path / "r"))
    assert "holds no MNIST IDX files" in line and "train-images-idx3-ubyte" in line
    assert not (tmp_path / "r").exists()


def test_latent_scatter_is_the_same_twice(results, tmp_path) -> None:
    from genbench.galleries import render

    _, folder = results
    a = render(folder, "scatter", tmp_path / "a.png")
    b = render(folder, "scatter", tmp_path / "b.png")
    assert a.read_bytes() == b.read_bytes()


# -- 7: a metric's failure costs that metric only ----------------------------------------------------
BOOM_PLUGIN = '''
from genbench.registry import register_metric


@register_metric("boom", produces={"boom": "a metric with a bug"}, default=False)
def boom(ctx):
    raise RuntimeError("a bug in a metric")
'''


@pytest.fixture
def _forget_boom():
    from genbench.registry import METRICS

    yield
    METRICS.pop("boom", None)  # a plugin metric must not outlive its test


def test_a_metric_that_raises_costs_only_that_metric(tmp_path: Path, _forget_boom) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "boom.py").write_text(BOOM_PLUGIN)
    out = _cli("run", "vae", *SMOKE, "--epochs", "1", "--metrics", "elbo,boom,active_units",
               "--results", str(tmp_path / "r"), "--plugins", str(tmp_path / "plugins"))
    assert out.exit_code == 0, out.output
    (folder,) = (tmp_path / "r").glob("synthetic/vae/*")
    metrics = json.loads((folder / store.METRICS).read_text())
    assert metrics["status"] == "finished"
    assert isinstance(metrics["test_elbo"], float) and isinstance(metrics["active_units"], (int, float))
    reason = metrics["not_applicable"]["boom"]
    assert reason.startswith("failed: RuntimeError") and "error.log" in reason and "\n" not in reason
    log = (folder / "error.log").read_text()
    assert "Traceback" in log and "metric boom failed" in log


# -- 8: non-finite samples; FID in a shifted frame ---------------------------------------------------
NAN_PLUGIN = '''
import torch

from genbench.registry import get_model, register_model

VAE = get_model("vae").cls


@register_model("vae-nan")
class NaNVAE(VAE):
    """A plugin one of whose decoded images holds NaN, another inf."""

    def generate(self, z, *args, **kwargs):
        x = super().generate(z, *args, **kwargs).clone()
        x[0, 0, 0, 0] = float("nan")
        x[-1, 0, 0, 1] = float("inf")
        return x
'''


def test_non_finite_samples_make_every_sample_metric_na(tmp_path: Path) -> None:
    from genbench.data import DataRequest, load_dataset
    from genbench.evaluation import evaluate_model
    from genbench.plugins import load_folder
    from genbench.presets import get_preset
    from genbench.registry import get_model
    from genbench.settings import resolve

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "nan.py").write_text(NAN_PLUGIN)
    load_folder(tmp_path / "plugins")
    cls = get_model("vae-nan").cls
    data = load_dataset(DataRequest("synthetic"))
    config, preset = resolve(cls.Config, {}, get_preset("smoke"), {})
    model = cls(config, data.info)
    values, na = evaluate_model(model, data, preset, seed=0, device=torch.device("cpu"),
                                names=("quality", "modes", "elbo"))
    for key in ("fid", "kid", "precision", "recall", "density", "coverage", "inception_score",
                "mode_kl", "classes_covered"):
        assert key not in values and na[key].startswith("samples are not finite"), key
    assert "test_elbo" in values  # a metric that draws no samples is kept


def _fid_scipy(a, b) -> float:
    import numpy as np
    from scipy import linalg

    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_fid_is_translation_invariant_with_a_large_common_offset() -> None:
    from genbench.metrics.frechet import (
        FidStatistics,
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )

    gen = torch.Generator().manual_seed(0)
    a = 0.01 * torch.randn(600, 8, generator=gen, dtype=torch.float64)
    b = 0.01 * torch.randn(500, 8, generator=gen, dtype=torch.float64) @ torch.diag(
        torch.linspace(0.5, 1.5, 8, dtype=torch.float64)) + 0.003
    reference = _fid_scipy(a.numpy(), b.numpy())

    def fid(x, y, chunk=None):
        return fid_statistics_to_metric(fid_features_to_statistics(x, chunk),
                                        fid_features_to_statistics(y, chunk))

    assert fid(a, b) == pytest.approx(reference, rel=1e-6)
    shifted = fid(a + 1e4, b + 1e4, chunk=128)
    assert shifted == pytest.approx(reference, rel=1e-6)
    # statistics gathered in different frames merge exactly
    parts = FidStatistics.empty(8).update(a[:300] + 1e4).merge(FidStatistics.empty(8).update(a[300:] + 1e4))
    assert fid_statistics_to_metric(parts, fid_features_to_statistics(b + 1e4)) == pytest.approx(
        reference, rel=1e-6)


# -- 1 (unit) and 16: the deferral itself; report files written atomically ------------------------
@pytest.mark.usefixtures("ctrl_c_delivered")
def test_sigint_is_deferred_to_the_step_boundary_and_the_handler_restored() -> None:
    import signal

    from genbench.training import deferred_sigint, interrupt_point

    before = signal.getsignal(signal.SIGINT)
    steps = []
    with pytest.raises(KeyboardInterrupt), deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)  # lands "inside a step": nothing happens yet
        steps.append("step finished")
        interrupt_point()
        steps.append("never")
    assert steps == ["step finished"]
    assert signal.getsignal(signal.SIGINT) is before
    # pending at the end of the block: raised on exit
    with pytest.raises(KeyboardInterrupt), deferred_sigint():
        os.kill(os.getpid(), signal.SIGINT)
        steps.append("last step")
    assert steps[-1] == "last step" and signal.getsignal(signal.SIGINT) is before


def test_report_files_are_written_atomically(results, tmp_path, monkeypatch) -> None:
    root, _ = results
    written = []
    original = store.atomic_write_bytes

    def spy(path, data):
        written.append(Path(path).name)
        return original(path, data)

    monkeypatch.setattr(store, "atomic_write_bytes", spy)
    out = _cli("report", "--results", str(root), "--out", str(tmp_path / "rep"), "--no-galleries")
    assert out.exit_code == 0, out.output
    assert {"report.md", "index.html"} <= set(written)
    pngs = {p.name for p in (tmp_path / "rep").rglob("*.png")}
    assert pngs and pngs <= set(written)
    assert not list((tmp_path / "rep").rglob("*.tmp"))


# -- 9: a results folder is untrusted input (issue 26) ------------------------------------------------
def _edit_config(folder: Path, **changes) -> None:
    config = json.loads((folder / store.CONFIG).read_text())
    for key, value in changes.items():
        if value is _DELETE:
            config.pop(key)
        else:
            config[key] = value
    (folder / store.CONFIG).write_text(json.dumps(config))


_DELETE = object()


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("model", ["../../../../x", "/abs/x", "a\x00b", "y" * 300, "<script>1</script>"])
def test_a_stored_name_never_becomes_a_path(results, tmp_path, model) -> None:
    """Traversal, absolute, NUL and over-long model names in a foreign config.json: that run is
    skipped with its reason, the others are reported, and nothing is written outside --out."""
    root, folder = results
    bad = folder.parent / "foreign"
    shutil.copytree(folder, bad)
    _edit_config(bad, model=model)
    before = _files(tmp_path)
    out = _cli("report", "--results", str(root), "--out", str(tmp_path / "rep"), "--no-galleries")
    assert out.exit_code == 0, out.output
    assert f"{bad / store.CONFIG}: model" in out.stdout and "is not a name" in out.stdout
    rep = tmp_path / "rep"
    assert {p for p in _files(tmp_path) - before if p != rep and rep not in p.parents} == set()
    assert "from 1 runs" in (tmp_path / "rep" / "report.md").read_text()


def test_store_names_and_paths_are_checked() -> None:
    for name in ("../x", "/abs", "a\x00b", "x" * 101, "", 7, None, "a b", "a/b", ".."):
        with pytest.raises(store.GenbenchError, match="is not a name"):
            store.check_name(name, "model")
    assert store.check_name("linear-vae_2", "model") == "linear-vae_2"
    with pytest.raises(store.GenbenchError, match="leaves"):
        store.inside(Path("/tmp/out"), Path("/tmp/out/img/../../x.png"))
    assert store.inside(Path("/tmp/out"), Path("/tmp/out/img/a.png")) == Path("/tmp/out/img/a.png")


def _active_elements(html: str) -> list[str]:
    """Tags a browser would act on: scripts, event handlers, javascript: links, foreign images."""
    import re

    tags = re.findall(r"<[a-zA-Z][^>]*>", html)
    return [t for t in tags if re.match(r"<(script|iframe|object|embed)", t, re.I)
            or re.search(r"\son\w+\s*=", t, re.I) or "javascript:" in t.lower()
            or (t.lower().startswith("<img") and 'src="img/' not in t)]


def test_report_md_holds_no_raw_html_from_stored_strings(results, tmp_path) -> None:
    """`<script>`, `<img onerror>` and a javascript: link in a command, a reason, a feature
    space and a failure: report.md holds no `<` at all, and python-markdown (as mkdocs
    renders it) makes no active element; index.html stays escaped."""
    markdown = pytest.importorskip("markdown")
    root, folder = results
    bad = folder.parent / "inj"
    shutil.copytree(folder, bad)
    _edit_config(bad, command="genbench run `<script>alert(1)</script>` <img src=x onerror=alert(2)>"
                 " [x](javascript:alert(3)) x\\`<b>`")
    metrics = json.loads((bad / store.METRICS).read_text())
    metrics.update(feature_space="<script>fs</script>", fid=1.0,
                   not_applicable={"test_exact": "<img src=x onerror=alert(4)> | `x` <b>"})
    (bad / store.METRICS).write_text(json.dumps(metrics))
    _edit_config(bad, seed=1)  # other seeds: copies of the same run would count once
    failed = folder.parent / "failed"
    shutil.copytree(folder, failed)
    _edit_config(failed, seed=2)
    (failed / store.METRICS).write_text(json.dumps({"status": "failed",
                                                    "reason": "<script>alert(5)</script>"}))
    out = _cli("report", "--results", str(root), "--out", str(tmp_path / "rep"), "--no-galleries")
    assert out.exit_code == 0, out.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "<" not in md and "alert(1)" in md and "alert(5)" in md
    assert _active_elements(markdown.markdown(md, extensions=["tables"])) == []
    page = (tmp_path / "rep" / "index.html").read_text()
    assert [t for t in _active_elements(page) if not t.startswith('<img src="data:image/png')] == []


def test_markdown_keeps_the_reports_own_code_bold_and_links() -> None:
    from genbench.report.document import md_inline

    assert md_inline("**best** `genbench run vae` [Models](#the-models)") == (
        "**best** `genbench run vae` [Models](#the-models)")
    assert md_inline("a | b") == "a | b"  # pipes: escaped by the table cell, not here
    assert md_inline("lone ` <x>") == "lone \\` &lt;x&gt;"


@pytest.mark.parametrize("change", [
    {"model": _DELETE}, {"dataset": "synthetic"}, {"model_config": [1]}, {"model": 7},
    {"preset": "PRESET+"}])
def test_a_wrong_config_json_is_one_line_in_eval_and_a_skip_in_report(results, tmp_path, change) -> None:
    root, folder = results
    if change.get("preset") == "PRESET+":  # an extra key in its preset
        preset = json.loads((folder / store.CONFIG).read_text())["preset"]
        change = {"preset": {**preset, "warp": 9}}
    _edit_config(folder, **change)
    line = _cli_error("eval", str(folder), "--metrics", "elbo", "--device", "cpu")
    assert str(folder / store.CONFIG) in line, line
    out = _cli("report", "--results", str(root), "--out", str(tmp_path / "rep"), "--no-galleries")
    if "warp" in line:  # the store's schema allows more preset keys; loading a model does not
        assert out.exit_code == 0, out.output
    else:
        assert out.exit_code == 2 and "no readable runs" in _one_line(out.stderr)


def test_report_skips_a_bad_config_and_goes_on(results, tmp_path) -> None:
    root, folder = results
    for i, change in enumerate([{"dataset": "synthetic"}, {"model_config": [1]}, {"model": 7}]):
        bad = folder.parent / f"bad{i}"
        shutil.copytree(folder, bad)
        _edit_config(bad, **change)
    out = _cli("report", "--results", str(root), "--out", str(tmp_path / "rep"), "--no-galleries")
    assert out.exit_code == 0, out.output
    assert "skipped 3 run(s)" in out.stdout and "from 1 runs" in (tmp_path / "rep" / "report.md").read_text()
    df = store.load_results(root)
    assert len(df) == 1 and len(df.attrs["skipped"]) == 3


def test_a_corrupt_history_or_sample_png_skips_that_part(results, tmp_path) -> None:
    """Non-UTF-8 bytes in history.csv, a damaged samples/epoch_001.png (of a failed run, whose
    strip the report draws): each part is left out with a one-line warning, not the report."""
    from genbench.errors import GenbenchWarning

    root, folder = results
    failed = folder.parent / "failed"
    shutil.copytree(folder, failed)
    _edit_config(failed, seed=1)  # another seed: a copy of the same run would count once
    (folder / store.HISTORY).write_bytes(b"epoch,loss\n1,\xff\xfe\n")
    (failed / "samples" / "epoch_001.png").write_bytes(b"\x89PNG not really")
    (failed / store.METRICS).write_text(json.dumps({"status": "failed", "reason": "diverged"}))
    with pytest.warns(GenbenchWarning) as caught:
        out = _cli("report", "--results", str(root), "--out", str(tmp_path / "rep"), "--no-galleries")
    assert out.exit_code == 0, out.output
    notes = [str(w.message) for w in caught]
    assert any("history.csv is unreadable" in n for n in notes), notes
    assert any("unreadable image" in n for n in notes), notes
    assert all("\n" not in n for n in notes)


def test_eval_of_a_relative_run_folder(results, monkeypatch) -> None:
    """`cd results/synthetic/vae && genbench eval <run-id>`: the layout is read from the
    absolute path (it was `parents[2]` of a relative one, an IndexError)."""
    root, folder = results
    monkeypatch.chdir(folder.parent)
    out = _cli("eval", folder.name, "--metrics", "elbo", "--device", "cpu")
    assert out.exit_code == 0, out.output
    assert store.results_root(Path(folder.name), store.read_config(folder)) == root


def test_a_run_copied_to_a_shallow_path_has_no_results_root(results, tmp_path) -> None:
    """The floor of a copied run folder goes to the cache, never to `<folder>/../../..`."""
    root, folder = results
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    config = store.read_config(copy)
    assert store.results_root(copy, config) is None
    assert store.results_root(Path("/") / folder.name, config) is None
    assert store.results_root(folder, config) == root


# -- 10: one line for every OS error, by one handler (issue 26) ---------------------------------------
@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 300 kB tmpfs (needs root; skipped otherwise: the errno test below still runs)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def _fill(disk: Path, leave_kb: int) -> None:
    for f in disk.iterdir():
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    free = shutil.disk_usage(disk).free
    with contextlib.suppress(OSError), open(disk / "fill", "wb") as f:
        f.write(b"\0" * max(free - leave_kb * 1024, 0))


@pytest.mark.parametrize("leave_kb", [0, 300])
def test_a_full_disk_is_one_line_in_every_command(results, tiny_disk, monkeypatch, leave_kb) -> None:
    root, folder = results
    commands = {
        "report": ["report", "--results", str(root), "--out", str(tiny_disk / "rep")],
        "gallery": ["gallery", str(folder), "--kind", "samples", "--out", str(tiny_disk / "g.png")],
        "export": ["export", str(root), "--out", str(tiny_disk / "x.csv")],
        "features": ["features", "synthetic", "--preset", "smoke", "--device", "cpu"],
    }
    failed = []
    for name, args in commands.items():
        if leave_kb and name in ("gallery", "export"):  # a few kB: they fit
            continue
        _fill(tiny_disk, leave_kb)
        if name == "features":
            monkeypatch.setenv("GENBENCH_CACHE", str(tiny_disk / "cache"))
        out = _cli(*args)
        if out.exit_code == 0:  # it fit in what was left
            assert leave_kb > 0, (name, out.output)
            continue
        assert out.exit_code == 2, (name, out.output)
        assert "No space left on device" in _one_line(out.stderr) and "run the command again" in out.stderr
        failed.append(name)
    assert failed if leave_kb else len(failed) == 4
    assert "features" in failed  # the evaluator's cache (~1 MB) never fits in 300 kB


@pytest.mark.parametrize("code", ["ENOSPC", "ENAMETOOLONG", "ENOTDIR", "EACCES"])
def test_any_os_error_in_any_command_is_one_line(results, tmp_path, monkeypatch, code) -> None:
    """The one handler (cli.friendly) words every errno, whichever command raised it."""
    root, folder = results
    num = getattr(errno, code)

    def fail(*args, **kwargs):
        raise OSError(num, os.strerror(num))

    monkeypatch.setattr(store.os, "fsync", fail)  # every atomic write of every command
    for args in (["report", "--results", str(root), "--out", str(tmp_path / "rep"), "--no-galleries"],
                 ["gallery", str(folder), "--out", str(tmp_path / "g.png")],
                 ["eval", str(folder), "--metrics", "elbo", "--device", "cpu"]):
        line = _cli_error(*args)
        assert os.strerror(num) in line and str(tmp_path) in line, line


def test_os_errors_before_anything_runs(tmp_path: Path, monkeypatch) -> None:
    """A 300-character folder name; GENBENCH_CACHE pointing at a file."""
    line = _cli_error(*RUN, "--results", str(tmp_path / ("r" * 300)))
    assert "name too long" in line.lower() and "shorter path" in line
    assert not list(tmp_path.iterdir())
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path / "file"))
    line = _cli_error("features", "synthetic", "--preset", "smoke", "--device", "cpu")
    assert "Not a directory" in line and str(tmp_path / "file") in line, line


# -- 11: every value checked before anything runs (issue 26) ------------------------------------------
def test_values_are_checked_before_anything_runs(tmp_path: Path) -> None:
    torch.save({"a": 1}, tmp_path / "not_state.pt")
    torch.save({"model": {}, "payload": Path("/")}, tmp_path / "pickled.pt")
    (tmp_path / "noise.pt").write_bytes(b"\0" * 64)
    torch.save({"fc.weight": torch.zeros(10, 2048)}, tmp_path / "small.pt")
    cases = [
        (["--seed", str(10**25)], "from 0 to"),
        (["--seed", "-1"], "from 0 to"),
        (["--executor", "slurm", "--slurm-partition", "gpu\ntouch X", "--dry-run"], "control character"),
        (["--executor", "slurm", "--slurm-partition", "gpu;touch X", "--dry-run"], "partition names"),
        (["--set", "feature_extractor=inception"], "need a weights file"),
        (["--set", "feature_extractor=inception", "--set", f"inception_weights={tmp_path / 'x.pt'}"],
         "need a weights file"),
        *[(["--set", "feature_extractor=inception", "--set", f"inception_weights={tmp_path / f}"],
           "is not a") for f in ("not_state.pt", "pickled.pt", "noise.pt", "small.pt")],
    ]
    for extra, phrase in cases:
        line = _cli_error(*RUN, "--results", str(tmp_path / "r"), *extra)
        assert phrase in line and "weights_only=False" not in line, (extra, line)
    assert not (tmp_path / "r").exists()


def test_gallery_n_is_bounded(results) -> None:
    _, folder = results
    assert "use 1 to 64" in _cli_error("gallery", str(folder), "--kind", "samples", "--n", "1000")
    assert not list(folder.glob("gallery_*"))


# -- 12: no silent zeros (issue 26) --------------------------------------------------------------------
def _with_nan(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[3, 1] = float("nan")
    return x


def test_every_sample_metric_refuses_non_finite_features() -> None:
    """One NaN in one feature vector: coverage was a silent 0.0, KID NaN, mode_kl a number."""
    from genbench.metrics.finite import NonFiniteFeatures
    from genbench.metrics.frechet import fid_features_to_statistics
    from genbench.metrics.kid import kid_features_to_metric
    from genbench.metrics.modes import class_histogram, classes_covered, inception_score, mode_kl
    from genbench.metrics.prdc import prdc_features_to_metric, prdc_standard

    gen = torch.Generator().manual_seed(0)
    real, fake = torch.randn(40, 6, generator=gen), torch.randn(40, 6, generator=gen)
    probs = torch.full((6,), 1 / 6, dtype=torch.float64)
    calls = {
        "coverage, precision, recall, density": lambda r, g: prdc_standard(r, g),
        "prdc at k=3": lambda r, g: prdc_features_to_metric(r, g, k=3),
        "kid": lambda r, g: kid_features_to_metric(g, r, subsets=3, subset_size=10,
                                                   generator=torch.Generator().manual_seed(1)),
        "fid": lambda r, g: (fid_features_to_statistics(r), fid_features_to_statistics(g)),
        "mode_kl": lambda r, g: mode_kl(class_histogram(g, 6), probs),
        "classes_covered": lambda r, g: classes_covered(class_histogram(g, 6), probs),
        "inception_score": lambda r, g: inception_score(g),
    }
    for name, fn in calls.items():
        fn(real, fake)  # finite: a number
        for r, g in ((real, _with_nan(fake)), (_with_nan(real), fake)):
            if name in ("mode_kl", "classes_covered", "inception_score") and r is not real:
                continue  # these read the samples' logits only
            with pytest.raises(NonFiniteFeatures, match="1 of 40 .* hold NaN or inf"):
                fn(r, g)
        bad = _with_nan(fake)
        bad[5, 0] = float("inf")
        with pytest.raises(NonFiniteFeatures, match="2 of 40"):
            fn(real, bad) if name not in ("fid",) else fid_features_to_statistics(bad)
    counts = torch.tensor([1.0, float("nan"), 0, 0, 0, 0], dtype=torch.float64)
    with pytest.raises(NonFiniteFeatures):
        mode_kl(counts, probs)


def test_a_nan_feature_makes_coverage_na_not_zero(monkeypatch) -> None:
    """End to end: an evaluator whose features hold one NaN; every sample metric is n/a with
    the reason, the others are measured."""
    from genbench.data import DataRequest, load_dataset
    from genbench.evaluation import evaluate_model
    from genbench.metrics import quality
    from genbench.plugins import load_plugins
    from genbench.presets import get_preset
    from genbench.registry import get_model
    from genbench.settings import resolve

    real_fn = quality.generated_features

    def poisoned(*args, **kwargs):
        out = real_fn(*args, **kwargs)
        return quality.FeatureSet(_with_nan(out.features), _with_nan(out.logits))

    monkeypatch.setattr(quality, "generated_features", poisoned)
    load_plugins()
    cls = get_model("vae").cls
    data = load_dataset(DataRequest("synthetic"))
    config, preset = resolve(cls.Config, {}, get_preset("smoke"), {})
    values, na = evaluate_model(cls(config, data.info), data, preset, seed=0,
                                device=torch.device("cpu"), names=("quality", "modes", "elbo"))
    for key in ("coverage", "precision", "recall", "density", "fid", "kid", "mode_kl",
                "inception_score", "classes_covered"):
        assert key not in values and na[key].startswith("features are not finite"), (key, na.get(key))
    assert "test_elbo" in values


GAUSS_PLUGIN = '''
from torch.distributions import Independent, Normal

from genbench.registry import get_model, register_model

VAE = get_model("vae").cls


@register_model("vae-gauss-wide")
class WideGaussianVAE(VAE):
    """A Gaussian decoder whose mean leaves [0, 1]: legitimate."""

    def generate(self, z, *args, **kwargs):
        return super().generate(z, *args, **kwargs) + 1.5

    def decode(self, z, *args, **kwargs):
        return Independent(Normal(self.generate(z, *args, **kwargs), 1.0), 3)
'''


def test_a_gaussian_mean_outside_the_unit_interval_is_legitimate(tmp_path: Path) -> None:
    """recon_bce is n/a (BCE of a Gaussian mean is undefined), recon_mse is measured;
    `genbench check` warns and exits 0."""
    from genbench.data import DataRequest, load_dataset
    from genbench.evaluation import evaluate_model
    from genbench.metrics.elbo import BCE_UNDEFINED
    from genbench.presets import get_preset
    from genbench.registry import get_model
    from genbench.settings import resolve

    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "gauss.py").write_text(GAUSS_PLUGIN)
    out = _cli("check", "vae-gauss-wide", "--plugins", str(tmp_path / "plugins"))
    assert out.exit_code == 0, out.output
    assert "WARNING  generate: generate(z) leaves [0, 1]" in out.output and "PROBLEM" not in out.output
    cls = get_model("vae-gauss-wide").cls
    data = load_dataset(DataRequest("synthetic"))
    config, preset = resolve(cls.Config, {}, get_preset("smoke"), {})
    values, na = evaluate_model(cls(config, data.info), data, preset, seed=0,
                                device=torch.device("cpu"), names=("recon",))
    assert values["recon_mse"] > 0 and "recon_mse_stderr" in values
    assert "recon_bce" not in values and na["recon_bce"] == BCE_UNDEFINED


# -- 13: migration: the previous contract, plugin runs after the fact (issue 26) ------------------------
OLD_CONTRACT_PLUGIN = '''
from genbench.registry import get_model, register_model

VAE = get_model("vae").cls


@register_model("vae-old-contract")
class OldContractVAE(VAE):
    """Written against the previous README: steps its optimizer itself, no flag."""

    def training_step(self, batch, optimizers):
        (opt,) = optimizers.values()
        out = super().training_step(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        return out
'''


def test_an_old_contract_plugin_gets_one_line_saying_what_to_change(tmp_path: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "old.py").write_text(OLD_CONTRACT_PLUGIN)
    plug = ["--plugins", str(tmp_path / "plugins")]
    line = _cli_error(*[a if a != "vae" else "vae-old-contract" for a in RUN],
                      "--results", str(tmp_path / "r"), *plug)
    assert "OldContractVAE.training_step(batch, optimizers)" in line
    assert "manual_optimization = True" in line and not (tmp_path / "r").exists()
    out = _cli("check", "vae-old-contract", *plug)
    assert out.exit_code == 1
    (problem,) = [ln for ln in out.stdout.splitlines() if "PROBLEM" in ln]
    assert "training step:" in problem and "manual_optimization = True" in problem
    from genbench.contract import old_contract
    from genbench.registry import get_model

    cls = get_model("vae-old-contract").cls
    assert old_contract(cls) and old_contract(get_model("vae").cls) is None
    cls.manual_optimization = True  # the one change the line asks for
    try:
        assert old_contract(cls) is None
        assert _cli("check", "vae-old-contract", *plug).exit_code == 0
    finally:
        del cls.manual_optimization


PLUGIN_RUN = '''
from genbench.registry import get_model, register_model

VAE = get_model("vae").cls


@register_model("vae-recorded")
class RecordedVAE(VAE):
    """A plugin model whose runs record where it came from."""
'''


def _forget_model(name: str) -> None:
    """As a new process would be: the plugin neither registered nor imported."""
    from genbench import plugins
    from genbench.registry import MODELS

    entry = MODELS.pop(name)
    plugins._loaded.discard(entry.cls.__module__)
    sys.modules.pop(entry.cls.__module__, None)


def test_a_plugin_run_is_reloaded_from_its_recorded_folder(tmp_path: Path) -> None:
    """gallery, eval and load_model on a plugin run need no --plugins; a changed plugin file
    is not imported by itself, and the line names the --plugins to pass."""
    import genbench

    folder_ = tmp_path / "plugins"
    folder_.mkdir()
    (folder_ / "recorded.py").write_text(PLUGIN_RUN)
    out = _cli("run", "vae-recorded", *SMOKE, "--epochs", "1", "--metrics", "elbo",
               "--results", str(tmp_path / "r"), "--plugins", str(folder_))
    assert out.exit_code == 0, out.output
    (run,) = (tmp_path / "r").glob("synthetic/vae-recorded/*")
    record = json.loads((run / store.CONFIG).read_text())["plugins"]
    assert record["folder"] == str(folder_.resolve()) and len(record["sha256"]) == 64
    _forget_model("vae-recorded")
    from genbench.errors import GenbenchWarning

    with pytest.warns(GenbenchWarning, match=f"loaded from {folder_.resolve()}"):
        out = _cli("gallery", str(run), "--kind", "samples", "--out", str(tmp_path / "g.png"))
    assert out.exit_code == 0, out.output
    assert (tmp_path / "g.png").stat().st_size > 0
    _forget_model("vae-recorded")
    with pytest.warns(GenbenchWarning):
        model, _ = genbench.load_model(run)
    assert type(model).__name__ == "RecordedVAE"
    _forget_model("vae-recorded")
    (folder_ / "recorded.py").write_text(PLUGIN_RUN + "\n# edited\n")
    line = _cli_error("gallery", str(run), "--kind", "samples", "--out", str(tmp_path / "g2.png"))
    assert "changed since the run" in line and f"--plugins {folder_.resolve()}" in line
    model, _ = genbench.load_model(run, plugins=[folder_])  # the user vouches for it
    assert type(model).__name__ == "RecordedVAE"
    assert "test_elbo" in genbench.evaluate(run, "elbo", device="cpu", plugins=[folder_])


# -- 14: honest small promises (issue 26) ----------------------------------------------------------------
def test_an_ignored_sigint_stays_ignored_during_training() -> None:
    """A job started with SIGINT ignored (nohup) is not made stoppable by Ctrl-C."""
    import signal

    from genbench.training import deferred_sigint, interrupt_point

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with deferred_sigint():
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            interrupt_point()  # nothing pending: the signal was ignored
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_resumed_success_clears_the_old_failure_reason(results) -> None:
    root, folder = results
    metrics = json.loads((folder / store.METRICS).read_text())
    (folder / store.METRICS).write_text(json.dumps({**metrics, "status": "failed",
                                                    "reason": "diverged: loss is nan"}))
    out = _cli(*RUN, "--results", str(root))
    assert out.exit_code == 0, out.output
    after = json.loads((folder / store.METRICS).read_text())
    assert after["status"] == "finished" and "reason" not in after
    store.update_metrics(folder, {"status": "failed", "reason": "again"})
    assert store.read_metrics(folder)["reason"] == "again"


def test_unlock_is_idempotent(results) -> None:
    _, folder = results
    _lock(folder, pid=2**22 + 7, host=socket.gethostname())  # a stale lock
    for _ in range(2):
        out = _cli("unlock", str(folder))
        assert out.exit_code == 0, out.output
    assert "not locked; nothing to do" in out.stdout and not (folder / store.LOCK).exists()
    assert "is not a folder" in _cli_error("unlock", str(folder / "missing"))


@pytest.mark.parametrize("typo, meant", [("fdi", "fid"), ("elbow", "elbo"), ("iwea", "iwae"),
                                         ("qualty", "quality")])
def test_name_suggestions_by_edit_distance(tmp_path: Path, typo: str, meant: str) -> None:
    line = _cli_error(*RUN[:-1], typo, "--results", str(tmp_path / "r"))
    assert line.endswith(f"did you mean {meant}?") or f"did you mean {meant}," in line, line
    from genbench.registry import edit_distance

    assert edit_distance("fdi", "fid") == 1 and edit_distance("fdi", "edits") == 3
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "ab") == 2


class _LocalSharder:
    """A sharder that runs each shard here (the Ray one runs them in workers)."""

    def __init__(self, shards: int) -> None:
        self.shards, self.sizes = shards, []

    def __call__(self, fn, jobs):
        self.sizes.append([job["x"].shape[0] for job in jobs])
        return [fn(self.model, **job) for job in jobs]


def test_sharded_ais_equals_unsharded_at_every_shard_size(results, monkeypatch) -> None:
    """AIS anneals images in fixed blocks aligned to global indices; shards hold whole blocks,
    so any shard count gives the unsharded per-image numbers bit for bit (10-image shards
    differed by 1e-4 nats when a shard was one matrix product). With the default blocks
    (>= every preset's AIS images on MNIST-sized data) the work stays one block."""
    from genbench.evaluation import sharded
    from genbench.loading import load_run
    from genbench.metrics import ais
    from genbench.metrics.obsmodel import ObservationModel

    _, folder = results
    run = load_run(folder)
    x = run.data.eval_x("test", 20)
    kwargs = dict(chains=4, start=4, max_steps=8, tol=0.0, hmc=ais.HMCConfig(leapfrog=3), seed=11,
                  from_encoder=True)
    obs = ObservationModel("decoder")
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # bit for bit at a fixed thread count (Ray's shards: --cpus-per-run)
    made, default = {}, ais.ROW_FLOATS
    try:
        for row_floats in (default, 5 * 4 * 784):  # default blocks; blocks of 5 images
            monkeypatch.setattr(ais, "ROW_FLOATS", row_floats)
            whole = ais.ais_until_converged(run.model, obs, x, **kwargs)
            for shards in (2, 3, 4):
                sharder = _LocalSharder(shards)
                sharder.model = run.model
                with sharded(sharder):
                    part = ais.ais_until_converged(run.model, obs, x, **kwargs)
                assert torch.equal(part.estimate, whole.estimate), (row_floats, shards)
                assert part.means == whole.means
                assert part.accept_rate == pytest.approx(whole.accept_rate, rel=1e-12)
                made[row_floats == default, shards] = sharder.sizes[0] if sharder.sizes else None
        assert made[False, 2] == [10, 10] and made[False, 3] == [10, 5, 5]  # 10-image shards
        assert made[False, 4] == [5, 5, 5, 5]
        assert made[True, 4] is None  # default blocks hold all 20 images: one task
    finally:
        torch.set_num_threads(old)


def test_metrics_schema_refuses_wrong_types_and_tolerates_new_lists(results) -> None:
    root, folder = results
    metrics = json.loads((folder / store.METRICS).read_text())
    (folder / store.METRICS).write_text(json.dumps({**metrics, "a_later_list": [1, 2]}))
    df = store.load_results(root)
    assert len(df) == 1 and "a_later_list" not in df and df.attrs["skipped"] == []
    for bad in ({"status": 1}, {"not_applicable": {"fid": 3}}, {"not_applicable": [1]},
                {"reason": ["x"]}, {"feature_space": {"a": 1}}):
        with pytest.raises(store.GenbenchError, match=str(folder / store.METRICS)):
            store.check_metrics({**metrics, **bad}, folder / store.METRICS)


def test_force_reruns_a_run_whose_metrics_json_the_schema_refuses(results) -> None:
    root, folder = results
    (folder / store.METRICS).write_text(json.dumps({"status": ["finished"]}))
    line = _cli_error(*RUN, "--results", str(root))
    assert str(folder / store.METRICS) in line and "--force" in line
    out = _cli(*RUN, "--results", str(root), "--force")
    assert out.exit_code == 0, out.output
    assert store.read_metrics(folder)["status"] == "finished"
