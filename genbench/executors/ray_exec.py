"""``--executor ray``: each run one Ray task; evaluation shards as Ray tasks.

Without ``--address`` Ray starts on this machine's cores; ``--address auto`` joins the
cluster this machine belongs to (``ray start --head`` on one node, ``ray start --address``
on the others), ``ray://host:port`` connects a Ray client. A task asks for
``--cpus-per-run`` CPUs (torch uses that many threads) and ``--gpus-per-run`` GPUs. A task
whose worker dies (SIGKILL, out of memory, a lost node) is retried ``--max-retries`` times
by Ray, each time resuming from the run's checkpoint; after that the run is marked failed
with the reason and the other runs go on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rich.console import Console

from genbench.errors import GenbenchError
from genbench.executors.base import (
    RayOptions,
    Sharder,
    check_fields,
    portable,
    require_extra,
    worker_env,
    worker_plugins,
)
from genbench.executors.task import RunTask, mark_failed, prepare_worker, run_task
from genbench.running.training import Plan, RunOutcome

CONNECT_TIMEOUT_S = 5.0
WORKER_NICENESS = "RAY_worker_niceness"  # read by the raylet a local ray.init starts


def _reachable(address: str) -> None:
    """A TCP connect to host:port (ray:// or plain), so a typo fails in seconds, not minutes."""
    parsed = urlparse(address if "://" in address else f"tcp://{address}")
    host, port = parsed.hostname, parsed.port
    if not host or not port:
        raise GenbenchError(f"--address {address!r}: expected auto, host:port or ray://host:port")
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise GenbenchError(f"--address {address}: cannot reach {host}:{port} ({err.strerror or err}); "
                            "is `ray start --head` running there?") from None


_STARTED = [False]  # this process called ray.init (so it shuts Ray down when done)


def connect(opts: RayOptions) -> tuple[dict[str, float], bool]:
    """Join (or start) Ray; (cluster resources, whether this process started it)."""
    import ray

    if opts.address not in (None, "auto"):
        _reachable(opts.address)
    if ray.is_initialized():  # started earlier by us (start()), or a caller's Ray (API, tests)
        return ray.cluster_resources(), _STARTED[0]
    # each task carries the driver's GENBENCH_* settings (worker_env), so no runtime_env
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING}
    if opts.address is None:
        kwargs["num_cpus"] = os.cpu_count() or 1
        # Ray runs its workers at nice 15 by default; here they are the sweep's real work, and
        # on a shared machine nice 15 hands their cores to every other process
        os.environ.setdefault(WORKER_NICENESS, "0")
    try:
        ray.init(address=opts.address, **kwargs)
    except (ConnectionError, RuntimeError, TimeoutError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GenbenchError(f"--address {opts.address}: cannot join the Ray cluster ({first})") from None
    _STARTED[0] = True
    return ray.cluster_resources(), True


def _warm(threads: int, env: dict[str, str], plugins: tuple[str, ...]) -> None:
    prepare_worker(threads, env, plugins)
    import genbench.running.evaluation  # noqa: F401  (the runner, the metrics, torch)
    import genbench.running.training  # noqa: F401


def warm_up(opts: RayOptions, resources: dict[str, float]) -> list[Any]:
    """One task per slot that imports genbench and the plugins, so the runs' first tasks
    find warm worker processes (on this machine a cold one costs seconds of imports)."""
    import ray

    slots = max(1, int(resources.get("CPU", 1) // opts.cpus_per_run))
    remote = ray.remote(_warm).options(num_cpus=opts.cpus_per_run, max_retries=0, name="genbench-warm-up")
    return [remote.remote(opts.cpus_per_run, worker_env(opts), worker_plugins(opts)) for _ in range(slots)]


def gpus_per_run(opts: RayOptions, resources: dict[str, float]) -> float:
    """The GPUs each run asks for: the option, else 1 where the cluster has GPUs; checked."""
    have_gpus, have_cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    gpus = opts.gpus_per_run if opts.gpus_per_run is not None else (1.0 if have_gpus else 0.0)
    if gpus > 0 and not have_gpus:
        raise GenbenchError(f"--gpus-per-run {gpus:g}: the Ray cluster has no GPUs "
                            f"({have_cpus:g} CPUs); use --gpus-per-run 0")
    if gpus > have_gpus:
        raise GenbenchError(f"--gpus-per-run {gpus:g}: no node of the Ray cluster has that many "
                            f"(it has {have_gpus:g} GPUs)")
    if opts.cpus_per_run > have_cpus:
        raise GenbenchError(f"--cpus-per-run {opts.cpus_per_run}: the Ray cluster has {have_cpus:g} CPUs")
    return gpus


def _remote_run(task: RunTask, shards: int) -> RunOutcome:  # the body of each run's Ray task
    if shards <= 1:
        return run_task(task)

    def around(plan: Plan) -> Any:  # the run's IWAE, AIS and BDMC split over Ray tasks
        from genbench.running.evaluation import sharded

        return sharded(RaySharder(plan.run_dir, str(plan.device), task.spec.data_dir, task.plugins,
                                  dict(task.env), task.threads, shards))

    return run_task(task, around)


def make_tasks(plans: list[Plan], opts: RayOptions) -> list[RunTask]:
    env = worker_env(opts)
    return [RunTask(portable(p.spec), str(p.run_dir.resolve()), threads=opts.cpus_per_run,
                    plugins=worker_plugins(opts), env=env) for p in plans]


def run_plans(plans: list[Plan], opts: RayOptions, console: Console) -> list[RunOutcome]:
    """Every plan as one Ray task; returns the outcomes in plan order."""
    import ray

    resources, started = connect(opts)
    try:
        return _run(plans, opts, console, resources)
    finally:
        if started:
            ray.shutdown()
            _STARTED[0] = False


def _run(plans: list[Plan], opts: RayOptions, console: Console, resources: dict[str, float]
         ) -> list[RunOutcome]:
    import ray
    from ray.exceptions import RayError, RayTaskError, TaskCancelledError

    from genbench.executors.live import SweepView

    gpus = gpus_per_run(opts, resources)  # checked before anything is submitted
    slots = max(1, int(resources.get("CPU", 1) // opts.cpus_per_run))
    if gpus:
        slots = min(slots, int(resources.get("GPU", 0) // gpus) or 1)
    remote = ray.remote(_remote_run).options(
        num_cpus=opts.cpus_per_run, num_gpus=gpus, max_retries=opts.max_retries,
        retry_exceptions=False, name="genbench-run")
    tasks = make_tasks(plans, opts)
    refs = {remote.remote(t, opts.eval_shards): i for i, t in enumerate(tasks)}
    outcomes: list[RunOutcome | None] = [None] * len(plans)
    view = SweepView([p.run_dir for p in plans], [t.label for t in tasks], console, slots,
                     enabled=opts.live)
    pending = list(refs)
    try:
        with view:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in done:
                    i = refs[ref]
                    try:
                        outcomes[i] = ray.get(ref)
                    except TaskCancelledError:
                        raise KeyboardInterrupt from None
                    except RayTaskError as err:  # the task itself raised (not a dead worker)
                        cause = err.cause if err.cause is not None else err
                        outcomes[i] = mark_failed(plans[i].run_dir, f"{type(cause).__name__}: {cause}")
                    except RayError as err:
                        outcomes[i] = mark_failed(plans[i].run_dir, _death_reason(err, opts))
                    view.finished(i, outcomes[i])
                view.refresh()
    except KeyboardInterrupt:
        for ref in pending:  # the tasks save a checkpoint on the KeyboardInterrupt Ray sends
            ray.cancel(ref)
        _wait_quietly(pending)
        raise
    return [o for o in outcomes if o is not None]


def _death_reason(err: Exception, opts: RayOptions) -> str:
    kind = type(err).__name__
    text = str(err).strip().splitlines()
    detail = next((line for line in text if "SIGKILL" in line or "killed" in line.lower()
                   or "died" in line.lower()), text[0] if text else "")
    tries = opts.max_retries + 1
    return (f"its Ray worker died {tries} time{'s' if tries > 1 else ''} ({kind}: {detail.strip()[:200]}); "
            "run the same command again to resume from its checkpoint")


def _wait_quietly(refs: list[Any], timeout: float = 30.0) -> None:
    import ray

    deadline = time.time() + timeout
    for ref in refs:
        try:
            ray.get(ref, timeout=max(0.1, deadline - time.time()))
        except Exception:  # noqa: S112 - cancelled or failed: either way it has stopped
            continue


# -- evaluation shards -------------------------------------------------------------------
_MODELS: dict[tuple[str, str, int, int], Any] = {}  # per worker process: loaded run models


def _shard_model(run_dir: str, device: str, data_dir: str | None) -> Any:
    from genbench.running.evaluation import load_run

    ckpt = Path(run_dir) / "checkpoint.pt"
    st = ckpt.stat()
    key = (str(Path(run_dir).resolve()), device, st.st_mtime_ns, st.st_size)
    if key not in _MODELS:
        _MODELS.clear()  # one run's model at a time per worker
        _MODELS[key] = load_run(Path(run_dir), device, data_dir).model
    return _MODELS[key]


def _remote_shard(fn: Callable[..., Any], run_dir: str, device: str, data_dir: str | None,
                  plugins: tuple[str, ...], env: dict[str, str], threads: int, job: dict[str, Any]) -> Any:
    prepare_worker(threads, env, plugins)
    model = _shard_model(run_dir, device, data_dir)
    return fn(model, **job)


class RaySharder:
    """Runs evaluation shards ``fn(model, **job)`` as Ray tasks; each worker rebuilds the
    model from the run folder's checkpoint (cached per worker process)."""

    def __init__(self, run_dir: Path, device: str, data_dir: str | None, plugins: tuple[str, ...],
                 env: dict[str, str], cpus: int, shards: int, max_retries: int = 2) -> None:
        self.run_dir, self.device, self.data_dir = str(Path(run_dir).resolve()), device, data_dir
        self.plugins, self.env, self.cpus, self.shards = plugins, env, cpus, shards
        self.max_retries = max_retries

    def __call__(self, fn: Callable[..., Any], jobs: list[dict[str, Any]]) -> list[Any]:
        import ray
        from ray.exceptions import RayError

        if not (Path(self.run_dir) / "checkpoint.pt").exists():
            raise GenbenchError(f"sharded evaluation needs {self.run_dir}/checkpoint.pt")
        remote = ray.remote(_remote_shard).options(num_cpus=self.cpus, max_retries=self.max_retries,
                                                   name="genbench-eval-shard")
        refs = [remote.remote(fn, self.run_dir, self.device, self.data_dir, self.plugins, self.env,
                              self.cpus, job) for job in jobs]
        try:
            return ray.get(refs)
        except RayError as err:
            raise GenbenchError(f"an evaluation shard failed: {type(err).__name__}: "
                                f"{str(err).strip().splitlines()[-1][:200]}") from None


def sharder_for(run_dir: Path, device: str, data_dir: str | None, opts: RayOptions) -> RaySharder:
    return RaySharder(run_dir, device, data_dir, worker_plugins(opts), worker_env(opts), opts.cpus_per_run,
                      opts.eval_shards, opts.max_retries)


class RayExecutor:
    name = "ray"
    options = RayOptions

    def check(self, opts: RayOptions) -> None:
        require_extra("ray", "ray", "ray")
        check_fields(opts)

    def start(self, opts: RayOptions) -> None:
        """Reach Ray before the driver loads data and plans: a bad ``--address`` or GPU
        request fails before anything else, and the workers import genbench meanwhile."""
        resources, _ = connect(opts)
        gpus_per_run(opts, resources)
        warm_up(opts, resources)

    def run(self, plans: list[Plan], opts: RayOptions, console: Console, results: Path) -> list[RunOutcome]:
        return run_plans(plans, opts, console)

    def sharder(self, opts: RayOptions, run_dir: Path, device: str, data_dir: str | None) -> Sharder | None:
        if opts.eval_shards < 2:
            return None
        connect(opts)
        return sharder_for(run_dir, device, data_dir, opts)
