"""``--executor slurm``: the runs as one SLURM job array, submitted through submitit.

Each array element runs one RunTask (the same worker body as a Ray task) on a node that
sees the results folder (a shared filesystem). The driver waits, drawing the sweep view
from the run folders; if it is killed, the jobs go on, and the same command later skips
what finished and resumes the rest from their checkpoints. ``--slurm-cluster local`` runs
the array with submitit's local executor on this machine: for testing, without SLURM.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from genbench.errors import GenbenchError
from genbench.executors.base import (
    Sharder,
    SlurmOptions,
    check_fields,
    portable,
    require_extra,
    worker_env,
    worker_plugins,
)
from genbench.executors.task import RunTask, mark_failed, run_task
from genbench.running.training import Plan, RunOutcome

CLUSTERS = ("slurm", "local", "debug")


def parse_time(text: str) -> int:
    """SLURM's time formats -> minutes (seconds round up): MM, MM:SS, HH:MM:SS, D-HH,
    D-HH:MM, D-HH:MM:SS."""
    bad = GenbenchError(f"--slurm-time {text!r}: use HH:MM:SS, D-HH:MM:SS or minutes")
    t, days = text.strip(), "0"
    if "-" in t:
        days, t = t.split("-", 1)
        parts = t.split(":")
        if len(parts) > 3:
            raise bad
        h, m, sec = (parts + ["0", "0"])[:3]
    else:
        parts = t.split(":")
        if len(parts) > 3:
            raise bad
        h, m, sec = {1: ("0", parts[0], "0"), 2: ("0", *parts), 3: tuple(parts)}[len(parts)]
    if not all(v.isdigit() for v in (days, h, m, sec)):
        raise bad
    total = int(days) * 1440 + int(h) * 60 + int(m) + (1 if int(sec) else 0)
    if total < 1:
        raise bad
    return total


def _cluster(opts: SlurmOptions) -> str:
    cluster = opts.cluster or "slurm"
    if cluster not in CLUSTERS:
        raise GenbenchError(f"--slurm-cluster {cluster!r}: use slurm, or local (for testing)")
    if cluster == "slurm" and not opts.dry_run and shutil.which("sbatch") is None:
        raise GenbenchError("--executor slurm: no sbatch here (not a SLURM login node); "
                            "use --dry-run to see the job array, or --slurm-cluster local to test")
    if cluster == "slurm" and not opts.partition and not opts.dry_run:
        raise GenbenchError("--executor slurm needs --slurm-partition P")
    return cluster


def parameters(opts: SlurmOptions, n: int) -> dict[str, Any]:
    params: dict[str, Any] = {"timeout_min": parse_time(opts.time_limit), "name": "genbench",
                              "cpus_per_task": opts.cpus_per_run, "nodes": 1, "tasks_per_node": 1}
    gpus = opts.gpus_per_run if opts.gpus_per_run is not None else 0
    if gpus:
        params["gpus_per_node"] = int(gpus)
    if opts.partition:
        params["slurm_partition"] = opts.partition
    params["slurm_array_parallelism"] = opts.parallel or n
    return params


def make_tasks(plans: list[Plan], opts: SlurmOptions) -> list[RunTask]:
    env = worker_env(opts)
    return [RunTask(portable(p.spec), str(p.run_dir.resolve()), threads=opts.cpus_per_run,
                    plugins=worker_plugins(opts), env=env) for p in plans]


def describe(plans: list[Plan], opts: SlurmOptions, folder: Path) -> list[str]:
    params = parameters(opts, len(plans))
    lines = [f"one SLURM job array of {len(plans)} task{'s' if len(plans) != 1 else ''} through submitit "
             f"(cluster {opts.cluster or 'slurm'}; logs in {folder}):",
             "  " + " ".join(f"{k}={v}" for k, v in sorted(params.items()))]
    for i, (task, plan) in enumerate(zip(make_tasks(plans, opts), plans, strict=True)):
        lines.append(f"  [{i}] {task.label} -> {plan.run_dir}")
    return lines


def run_plans(plans: list[Plan], opts: SlurmOptions, console: Console, results: Path
              ) -> list[RunOutcome]:
    import submitit

    from genbench.executors.live import SweepView

    cluster = _cluster(opts)
    folder = Path(opts.folder or Path(results) / "_slurm").resolve()
    if opts.dry_run:
        for line in describe(plans, opts, folder):
            console.print(line, highlight=False, soft_wrap=True)
        console.print("dry run: nothing submitted", style="dim")
        return []
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
    params = parameters(opts, len(plans))
    if cluster != "slurm":
        params = {k: v for k, v in params.items() if not k.startswith("slurm_")}
    executor.update_parameters(**params)
    tasks = make_tasks(plans, opts)
    jobs = executor.map_array(run_task, tasks)
    console.print(f"submitted job array {jobs[0].job_id.split('_')[0]} ({len(jobs)} tasks; logs in "
                  f"{folder})", highlight=False)
    slots = opts.parallel or len(plans)
    view = SweepView([p.run_dir for p in plans], [t.label for t in tasks], console, slots,
                     enabled=opts.live)
    outcomes: list[RunOutcome | None] = [None] * len(plans)
    with view:
        while any(o is None for o in outcomes):
            for i, job in enumerate(jobs):
                if outcomes[i] is None and job.done():
                    outcomes[i] = _result(job, plans[i])
                    view.finished(i, outcomes[i])
            view.refresh()
            time.sleep(0.5)
    return [o for o in outcomes if o is not None]


def _result(job: Any, plan: Plan) -> RunOutcome:
    try:
        return job.result()
    except Exception as err:  # the job died: out of time, killed, node lost
        text = str(err).strip().splitlines()
        reason = text[0][:200] if text else type(err).__name__
        return mark_failed(plan.run_dir, f"SLURM job {job.job_id} ended without a result "
                           f"({type(err).__name__}: {reason}); the same command resumes it")


class SlurmExecutor:
    name = "slurm"
    options = SlurmOptions

    def check(self, opts: SlurmOptions) -> None:
        require_extra("slurm", "submitit", "slurm")
        check_fields(opts)
        parse_time(opts.time_limit)

    def start(self, opts: SlurmOptions) -> None: ...

    def run(self, plans: list[Plan], opts: SlurmOptions, console: Console, results: Path) -> list[RunOutcome]:
        return run_plans(plans, opts, console, results)

    def sharder(self, opts: SlurmOptions, run_dir: Path, device: str, data_dir: str | None) -> Sharder | None:
        raise GenbenchError("genbench eval runs here or on Ray: use --executor local or ray")
