"""Executors: hand independent runs (and evaluation shards) to an existing engine.

genbench grows no scheduler of its own. ``local`` runs the plans one after another in this
process (today's behaviour); ``ray`` makes each (model, dataset, variant, seed) run one Ray
task with its CPU and GPU share, on a local Ray or a cluster (``--address``); ``slurm``
submits the runs as one SLURM job array through ``submitit``. Every executor calls the same
:func:`genbench.running.training.execute` on a plan rebuilt where it runs, from the RunSpec (never
tensors), so results, locks and resume are those of one machine, on a shared filesystem.

Options are checked before anything is submitted: an unknown executor, a missing extra, an
unreachable ``--address`` or a GPU request on a cluster without GPUs is one line.

Each executor is an :class:`~genbench.executors.base.Executor` (check, start, run, sharder)
with its own frozen options, and :data:`EXECUTORS` maps its name to it: a new executor is one
module and one line here. Nothing dispatches on the name.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.executors.base import (
    Executor,
    LocalOptions,
    RayOptions,
    RunOptions,
    SlurmOptions,
    portable,
    worker_env,
    worker_plugins,
)
from genbench.executors.local import LocalExecutor
from genbench.executors.ray_exec import RayExecutor
from genbench.executors.slurm import SlurmExecutor

EXECUTORS: dict[str, Executor] = {e.name: e for e in (LocalExecutor(), RayExecutor(), SlurmExecutor())}


def executor(name: str) -> Executor:
    if name not in EXECUTORS:
        from genbench.registry import closest

        raise closest(name, list(EXECUTORS), "executor")
    return EXECUTORS[name]


def options_for(name: str, **given: Any) -> RunOptions:
    """The options of executor ``name`` from the command line's values (every flag may be
    passed; one given to an executor that does not take it is one line naming the one that does)."""
    from genbench.executors.base import build

    _check_text_fields(name, given)
    chosen = executor(name)
    others = [e.options for e in EXECUTORS.values() if e is not chosen]
    return build(chosen.options, given, others)


def _check_text_fields(name: str, given: dict[str, Any]) -> None:
    """Fields that reach an sbatch script or a shell: printable, and a SLURM partition a name
    (a newline in one would be a line of the job script)."""
    import re

    fields = {"--executor": name, "--address": given.get("address"), "--slurm-time": given.get("time_limit"),
              "--slurm-partition": given.get("partition"), "--slurm-cluster": given.get("cluster")}
    for flag, value in fields.items():
        if isinstance(value, str) and not value.isprintable():
            raise GenbenchError(f"{flag} {value!r} holds a control character; pass a plain name")
    part = given.get("partition")
    if part is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*", part):
        raise GenbenchError(f"--slurm-partition {part!r}: use partition names (letters, digits, "
                            "'_', '-', '.'), comma-separated")


def check_options(opts: RunOptions) -> None:
    """Everything that can be checked without an engine: one line each."""
    executor(opts.name).check(opts)


def start(opts: RunOptions) -> None:
    """Reach the engine before the driver loads data and plans (Ray: a bad ``--address``
    fails first, and its workers import genbench meanwhile)."""
    executor(opts.name).start(opts)


def run_plans(plans: list, opts: RunOptions, console: Any, results: Path) -> list:
    """Execute planned runs on ``opts``' executor; the outcomes in plan order."""
    return executor(opts.name).run(plans, opts, console, results)


def eval_sharding(opts: RunOptions, run_dir: Path, device: str, data_dir: str | None
                  ) -> AbstractContextManager[None]:
    """``genbench eval``'s executor: a sharder around one run's evaluation, or nothing."""
    chosen = executor(opts.name)
    chosen.check(opts)
    sharder = chosen.sharder(opts, Path(run_dir), device, data_dir)
    if sharder is None:
        return nullcontext()
    from genbench.running.evaluation import sharded

    return sharded(sharder)


def ExecutorOptions(name: str = "local", **given: Any) -> RunOptions:  # noqa: N802 - the old class
    """The options of executor ``name`` (what ``ExecutorOptions(...)`` built before each
    executor had its own options; the slurm fields lose their ``slurm_`` prefix)."""
    renamed = {"slurm_partition": "partition", "slurm_time": "time_limit", "slurm_cluster": "cluster",
               "slurm_folder": "folder", "slurm_parallel": "parallel"}
    return options_for(name, **{renamed.get(k, k): v for k, v in given.items()})


__all__ = ["EXECUTORS", "Executor", "ExecutorOptions", "LocalOptions", "RayOptions", "RunOptions",
           "SlurmOptions", "check_options", "eval_sharding", "executor", "options_for", "portable",
           "run_plans", "start", "worker_env", "worker_plugins"]
