"""Executors: hand independent runs (and evaluation shards) to an existing engine.

genbench grows no scheduler of its own. ``local`` runs the plans one after another in this
process (today's behaviour); ``ray`` makes each (model, dataset, variant, seed) run one Ray
task with its CPU and GPU share, on a local Ray or a cluster (``--address``); ``slurm``
submits the runs as one SLURM job array through ``submitit``. Every executor calls the same
:func:`genbench.training.execute` on a plan rebuilt where it runs, from the RunSpec (never
tensors), so results, locks and resume are those of one machine, on a shared filesystem.

Options are checked before anything is submitted: an unknown executor, a missing extra, an
unreachable ``--address`` or a GPU request on a cluster without GPUs is one line.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from genbench.errors import GenbenchError

EXECUTORS = ("local", "ray", "slurm")
EXTRA = {"ray": ("ray", "ray"), "slurm": ("submitit", "slurm")}  # executor -> (module, extra)


@dataclass(frozen=True)
class ExecutorOptions:
    """How runs are executed (the ``genbench run``/``eval`` options of the same names)."""

    name: str = "local"
    address: str | None = None  # ray: "auto", "host:port" or "ray://host:port"; None: local Ray
    cpus_per_run: int = 1  # CPUs each run asks for; torch uses as many threads
    gpus_per_run: float | None = None  # None: 1 where the cluster has GPUs, else 0
    max_retries: int = 2  # ray: a run whose worker died is retried from its checkpoint
    eval_shards: int = 1  # IWAE, AIS and BDMC split over test images into this many tasks
    slurm_partition: str | None = None
    slurm_time: str = "12:00:00"
    slurm_cluster: str | None = None  # submitit cluster: None = SLURM; "local" (for testing)
    slurm_folder: Path | None = None  # submitit's logs; default <results>/_slurm
    slurm_parallel: int | None = None  # at most this many array tasks at once
    dry_run: bool = False
    plugins: tuple[str, ...] = ()  # extra plugin folders the workers load too
    live: bool = True  # show the sweep table (rich when a terminal, lines otherwise)
    extra_env: dict[str, str] = field(default_factory=dict)

    def replace(self, **changes: object) -> ExecutorOptions:
        return dataclasses.replace(self, **changes)


def check_options(opts: ExecutorOptions) -> None:
    """Everything that can be checked without an engine: one line each."""
    _check_text_fields(opts)
    if opts.name not in EXECUTORS:
        from genbench.registry import closest

        raise closest(opts.name, list(EXECUTORS), "executor")
    require_extra(opts.name)
    if opts.cpus_per_run < 1:
        raise GenbenchError("--cpus-per-run must be at least 1")
    if opts.gpus_per_run is not None and opts.gpus_per_run < 0:
        raise GenbenchError("--gpus-per-run cannot be negative")
    if opts.max_retries < 0:
        raise GenbenchError("--max-retries cannot be negative")
    if opts.eval_shards < 1:
        raise GenbenchError("--eval-shards must be at least 1")
    if opts.eval_shards > 1 and opts.name != "ray":
        raise GenbenchError("--eval-shards needs --executor ray (the shards are Ray tasks)")
    if opts.dry_run and opts.name != "slurm":
        raise GenbenchError("--dry-run is for --executor slurm (to see any sweep's runs and cost: --plan)")
    if opts.address is not None and opts.name != "ray":
        raise GenbenchError("--address is for --executor ray")
    if opts.name == "slurm":
        from genbench.executors.slurm import parse_time

        parse_time(opts.slurm_time)


def _check_text_fields(opts: ExecutorOptions) -> None:
    """Fields that reach an sbatch script or a shell: printable, and a SLURM partition a name
    (a newline in one would be a line of the job script)."""
    import re

    fields = {"--executor": opts.name, "--address": opts.address, "--slurm-time": opts.slurm_time,
              "--slurm-partition": opts.slurm_partition, "--slurm-cluster": opts.slurm_cluster}
    for flag, value in fields.items():
        if isinstance(value, str) and not value.isprintable():
            raise GenbenchError(f"{flag} {value!r} holds a control character; pass a plain name")
    part = opts.slurm_partition
    if part is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*", part):
        raise GenbenchError(f"--slurm-partition {part!r}: use partition names (letters, digits, "
                            "'_', '-', '.'), comma-separated")


def require_extra(name: str) -> None:
    if name not in EXTRA:
        return
    module, extra = EXTRA[name]
    if importlib.util.find_spec(module) is None:
        raise GenbenchError(f"--executor {name} needs {module}: pip install \"genbench[{extra}]\"")


def worker_env(opts: ExecutorOptions) -> dict[str, str]:
    """The driver's GENBENCH_* settings (cache, data, offline, plugins), which a worker
    started elsewhere (or earlier) must see as the driver does."""
    env = {k: v for k, v in os.environ.items() if k.startswith("GENBENCH_")}
    return {**env, **opts.extra_env}


def worker_plugins(opts: ExecutorOptions) -> tuple[str, ...]:
    """``--plugins`` folders as absolute paths (a worker may start in another folder)."""
    return tuple(str(Path(p).expanduser().resolve()) for p in opts.plugins)


def start(opts: ExecutorOptions) -> None:
    """Reach the engine before the driver loads data and plans: a bad ``--address`` or GPU
    request fails before anything else, and Ray's workers import genbench meanwhile."""
    if opts.name == "ray" and not opts.dry_run:
        from genbench.executors.ray_exec import connect, gpus_per_run, warm_up

        resources, _ = connect(opts)
        gpus_per_run(opts, resources)
        warm_up(opts, resources)


def run_plans(plans: list, opts: ExecutorOptions, console: object, results: Path) -> list:
    """Execute planned runs on a Ray or SLURM executor; the outcomes in plan order."""
    if opts.name == "ray":
        from genbench.executors.ray_exec import run_plans as run_ray

        return run_ray(plans, opts, console)  # type: ignore[arg-type]
    if opts.name == "slurm":
        from genbench.executors.slurm import run_plans as run_slurm

        return run_slurm(plans, opts, console, results)  # type: ignore[arg-type]
    raise GenbenchError(f"executor {opts.name!r} runs in the caller")


def eval_sharding(opts: ExecutorOptions, run_dir: Path, device: str, data_dir: str | None
                  ) -> AbstractContextManager[None]:
    """``genbench eval``'s executor: a Ray sharder around one run's evaluation, or nothing."""
    if opts.name == "slurm":
        raise GenbenchError("genbench eval runs here or on Ray: use --executor local or ray")
    check_options(opts)
    if opts.name != "ray" or opts.eval_shards < 2:
        return nullcontext()
    from genbench.evaluation import sharded
    from genbench.executors.ray_exec import connect, sharder_for

    connect(opts)
    return sharded(sharder_for(Path(run_dir), device, data_dir, opts))


def portable(spec: object) -> object:
    """The RunSpec a worker elsewhere can use: the results folder as an absolute path."""
    return dataclasses.replace(spec, results=Path(spec.results).resolve())  # type: ignore[type-var]


__all__ = ["EXECUTORS", "ExecutorOptions", "check_options", "eval_sharding", "portable", "require_extra",
           "run_plans", "start", "worker_env"]
