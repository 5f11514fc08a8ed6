"""One run as a task: what a Ray task or a SLURM array element executes.

The task carries the :class:`~genbench.running.training.RunSpec` (never tensors); the worker sets
its thread count, loads the plugins and the data itself, rebuilds the plan and calls the
same :func:`genbench.running.training.execute` as ``--executor local``. Where it stands goes to a
small ``.progress.json`` in the run folder, which the driver's sweep view reads (it works
the same on a shared filesystem under SLURM).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genbench import store
from genbench.metrics.context import EvalProgress
from genbench.running.training import RunOutcome, RunSpec

PROGRESS = ".progress.json"  # transient: removed when the task ends
Around = Callable[[Any], AbstractContextManager[Any]]  # plan -> what its execution runs inside


@dataclass(frozen=True)
class RunTask:
    spec: RunSpec
    run_dir: str  # where the driver planned it; a worker that resolves elsewhere fails
    threads: int = 1
    plugins: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        s = self.spec
        return f"{s.model} {s.dataset}{'/' + s.variant if s.variant else ''} seed {s.seed}"


def prepare_worker(threads: int, env: Mapping[str, str], plugins: tuple[str, ...] = ()) -> None:
    """What every worker does first: the driver's settings, its thread share, the plugins."""
    import torch

    os.environ.update(env)
    torch.set_num_threads(max(1, threads))
    from genbench.plugins import load_plugins

    load_plugins(list(plugins))


def run_task(task: RunTask, around: Around | None = None) -> RunOutcome:
    """Plan and execute one run where this process is (a Ray worker, a SLURM job);
    ``around(plan)`` is entered around its execution (Ray's evaluation shards)."""
    from genbench.errors import GenbenchError
    from genbench.running.training import plan_run

    prepare_worker(task.threads, task.env, task.plugins)
    folder = Path(task.run_dir)
    try:
        plan = plan_run(task.spec)
    except GenbenchError as err:
        return mark_failed(folder, f"on {socket.gethostname()}: {err}")
    if plan.run_dir.resolve() != folder.resolve():
        return mark_failed(folder, f"{socket.gethostname()} resolves this run to {plan.run_dir} "
                           f"(its data differs: {plan.data.source}); give the workers the same data")
    reporter = FileReporter(plan.run_dir, plan.data.steps_per_epoch(plan.preset.batch_size),
                            plan.preset.epochs)
    from genbench.running.training import execute

    try:
        with around(plan) if around is not None else contextlib.nullcontext():
            return execute(plan, reporter)
    except store.Busy as err:  # another driver holds this run: skipped, its folder untouched
        return RunOutcome("busy", plan.run_dir, {}, str(err))
    finally:
        reporter.close()


def mark_failed(folder: Path, reason: str) -> RunOutcome:
    folder.mkdir(parents=True, exist_ok=True)
    metrics = store.update_metrics(folder, {"status": "failed", "reason": reason})
    return RunOutcome("failed", folder, metrics, reason)


class FileReporter:
    """The runner's Reporter for a worker: writes where the run stands to .progress.json
    (atomically, at most once a second) instead of drawing a progress bar."""

    def __init__(self, folder: Path, steps_per_epoch: int, epochs: int, every: float = 1.0) -> None:
        self.path = Path(folder) / PROGRESS
        self.steps_per_epoch, self.epochs, self.every = max(1, steps_per_epoch), epochs, every
        self.state: dict[str, Any] = {"phase": "starting", "host": socket.gethostname(),
                                      "pid": os.getpid(), "epochs": epochs}
        self.done = 0
        self.total = 0
        self.images = 0
        self.t0 = time.time()
        self.last = 0.0
        self._write(force=True)

    # -- training (the Reporter protocol) --
    def start(self, title: str, total_steps: int, done_steps: int) -> None:
        self.done, self.total, self.images, self.t0 = done_steps, total_steps, 0, time.time()
        self.state.update(phase="training", steps=total_steps, step=done_steps, first_step=done_steps,
                          epoch=done_steps // self.steps_per_epoch + 1, started=self.t0)
        self._write(force=True)

    def advance(self, steps: int, images: int, losses: Mapping[str, float]) -> None:
        self.done += steps
        self.images += images
        rate = self.images / max(time.time() - self.t0, 1e-9)
        self.state.update(step=self.done, epoch=min(self.epochs, self.done // self.steps_per_epoch + 1),
                          images_per_s=round(rate, 1),
                          losses={k: round(float(v), 4) for k, v in losses.items()})
        self._write()

    def note(self, message: str) -> None: ...

    def stop(self) -> None: ...

    # -- evaluation (the Reporter protocol's evaluation phase) --
    def evaluation(self, title: str) -> _EvalWatch:
        self.state.update(phase="evaluating", metric=None)
        self._write(force=True)
        return _EvalWatch(self)

    def close(self) -> None:
        self.path.unlink(missing_ok=True)

    def _write(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last < self.every:
            return
        self.last = now
        self.state["updated"] = now
        with contextlib.suppress(OSError):  # progress is a courtesy; never fail a run for it
            store.atomic_write_bytes(self.path, json.dumps(self.state).encode())


class _EvalWatch(EvalProgress):
    """An EvalProgress: which metric is being evaluated, and how far."""

    def __init__(self, reporter: FileReporter) -> None:
        self.r = reporter

    def start(self, metric: str) -> None:
        self.r.state.update(metric=metric, metric_done=None, metric_total=None)
        self.r._write(force=True)

    def update(self, metric: str, done: int, total: int, unit: str) -> None:
        self.r.state.update(metric=metric, metric_done=done, metric_total=total, metric_unit=unit)
        self.r._write()

    def end(self, metric: str, seconds: float, failed: str | None = None) -> None: ...

    def stop(self) -> None: ...


def read_progress(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(folder) / PROGRESS).read_text())
    except (OSError, ValueError):
        return {}
