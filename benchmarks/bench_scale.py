"""Scale: a sweep through Ray against the local executor, Ray's overhead per task, and AIS
sharded over 2 workers against 1, in one run on this machine. Reported as ratios.

1. ``sweep``: 4 quick runs (vae and ae, seeds 0 and 1; ``--epochs`` and ``--metrics`` cut
   the quick preset to fit a session) run by ``--executor local`` (one after another, one
   thread) and by ``--executor ray`` (2 at once, 1 CPU and 1 thread each) into separate
   results folders. The runs are checked equal folder by folder (checkpoint tensors).
2. ``overhead``: from ``ray`` submitting a smoke run to its first training step (read from
   the task's ``.progress.json``), minus the same span in process (``execute`` to its
   first step); the first task (a new worker process) and later ones (a reused worker).
3. ``ais``: AIS (quick settings: 20 test images, 16 chains, ``--ais-steps`` distributions,
   10 leapfrog steps) on the first sweep run's VAE, unsharded in this process with one
   thread against 2 Ray shards of one thread each; checked equal image by image.

Goals: sweep >= 1.3x, overhead < 2 s per task, sharded AIS >= 1.7x on 2 workers.

    python benchmarks/bench_scale.py --epochs 5
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console


def sweep(results: Path, executor, epochs: int, metrics: tuple[str, ...], dataset: str
          ) -> tuple[float, list]:
    from genbench.runs import RunRequest, run_all

    t = time.perf_counter()
    request = RunRequest(("vae", "ae"), dataset=dataset, preset="quick", epochs=epochs, seeds=(0, 1),
                         device="cpu", results=results, metrics=metrics, force=True, executor=executor)
    out = run_all(request, Console(file=io.StringIO()))
    seconds = time.perf_counter() - t
    assert all(o.status == "finished" for o in out), [(o.status, o.message) for o in out]
    return seconds, out


def same_weights(a: Path, b: Path) -> bool:
    sa = torch.load(a / "checkpoint.pt", weights_only=True)["model"]
    sb = torch.load(b / "checkpoint.pt", weights_only=True)["model"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def local_start_span(spec) -> float:
    """In process: execute() called -> the runner's first step (reporter.start)."""
    from genbench.training import SilentReporter, execute, plan_run

    class Timer(SilentReporter):
        first = None

        def start(self, title, total_steps, done_steps):
            Timer.first = time.perf_counter()

    t = time.perf_counter()
    plan = plan_run(spec)  # the worker plans (and loads its data) too
    execute(plan, Timer())
    return Timer.first - t


def ray_start_span(spec, opts) -> float:
    """Ray: task submitted -> its first training step, from the task's .progress.json."""
    import ray

    from genbench.executors.ray_exec import _remote_run, make_tasks
    from genbench.executors.task import read_progress
    from genbench.training import plan_run

    plan = plan_run(spec)
    task = make_tasks([plan], opts)[0]
    remote = ray.remote(_remote_run).options(num_cpus=1, max_retries=0)
    t_wall = time.time()
    ref = remote.remote(task)
    started = None
    while started is None:
        prog = read_progress(plan.run_dir)
        if prog.get("phase") == "training":
            started = prog["started"]
        done, _ = ray.wait([ref], timeout=0.002)
        if done and started is None:
            raise RuntimeError("the task ended before its first step was seen")
    ray.get(ref)
    return started - t_wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=5, help="epochs per quick run (quick preset: 30)")
    ap.add_argument("--metrics", default="elbo", help="metrics evaluated by each run")
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--ais-steps", type=int, default=200)
    ap.add_argument("--overhead-repeats", type=int, default=4)
    ap.add_argument("--parts", default="sweep,overhead,ais", help="which measurements to make")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("RAY_worker_niceness", "0")  # as `genbench run --executor ray` starts Ray
    torch.set_num_threads(1)

    import ray

    from genbench.executors import ExecutorOptions
    from genbench.plugins import load_plugins
    from genbench.training import RunSpec

    load_plugins()
    root = Path(tempfile.mkdtemp(prefix="bench_scale_"))
    os.environ.setdefault("GENBENCH_CACHE", str(root / "cache"))
    metrics = tuple(m for m in args.metrics.split(",") if m)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    print(f"ray.init (local, 2 CPUs): {time.perf_counter() - t:.1f} s (once per sweep, not per task)")
    opts = ExecutorOptions("ray", cpus_per_run=1, max_retries=0, live=False)

    parts = set(args.parts.split(","))
    figures: dict[str, float] = {}
    # 1. the sweep
    if parts & {"sweep", "ais"}:
        local_s, local_out = sweep(root / "local", None, args.epochs, metrics, args.dataset)
        ray_s, ray_out = sweep(root / "ray", opts, args.epochs, metrics, args.dataset)
        equal = all(same_weights(a.run_dir, b.run_dir) for a, b in zip(local_out, ray_out, strict=True))
        print(f"sweep of 4 quick runs ({args.epochs} epochs, metrics {','.join(metrics)}, {args.dataset}): "
              f"local {local_s:.1f} s, ray 2x1 {ray_s:.1f} s -> {local_s / ray_s:.2f}x "
              f"(weights equal run by run: {equal})")
        figures["sweep_ratio"] = round(local_s / ray_s, 3)

    # 2. overhead per task
    if "overhead" in parts:
        from genbench.executors.ray_exec import warm_up

        spec = RunSpec(model="vae", dataset="synthetic", preset="smoke", seed=0, device="cpu",
                       results=root / "overhead", metrics=("elbo",), force=True)
        local_span = statistics.median(local_start_span(spec) for _ in range(3))
        ray.shutdown()  # a fresh Ray: the first task pays for a new worker process
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        spans = [ray_start_span(spec, opts) for _ in range(args.overhead_repeats)]
        ray.shutdown()  # again fresh, warmed as `genbench run` does while the driver plans
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        ray.get(warm_up(opts, ray.cluster_resources()))
        warmed = ray_start_span(spec, opts)
        print(f"ray overhead, submit -> first training step, minus in-process {local_span:.2f} s: "
              f"first task on a new worker {spans[0] - local_span:.2f} s, on a worker warmed during "
              f"planning {warmed - local_span:.2f} s, later tasks "
              f"{statistics.median(spans[1:]) - local_span:.2f} s (median of {len(spans) - 1})")
        figures.update(overhead_cold_s=round(spans[0] - local_span, 2),
                       overhead_warmed_s=round(warmed - local_span, 2),
                       overhead_later_s=round(statistics.median(spans[1:]) - local_span, 2))
    if "ais" not in parts:
        print(json.dumps(figures))
        ray.shutdown()
        return

    # 3. AIS sharded over 2 workers against 1
    from genbench.evaluation import load_run, sharded
    from genbench.executors.ray_exec import RaySharder
    from genbench.metrics.ais import HMCConfig, ais_log_likelihood
    from genbench.metrics.obsmodel import ObservationModel
    from genbench.metrics.shards import map_images

    folder = next(o.run_dir for o in ray_out if o.run_dir.parts[-2] == "vae")
    run = load_run(folder)
    x = run.data.eval_x("test", 20)
    kw = {"obs": ObservationModel("decoder"), "chains": 16, "steps": args.ais_steps,
          "hmc": HMCConfig(leapfrog=10), "seed": 1}
    t = time.perf_counter()
    one, _ = map_images(ais_log_likelihood, run.model, x, None, **kw)
    one_s = time.perf_counter() - t
    with sharded(RaySharder(folder, "cpu", None, (), {}, 1, 2)):
        t = time.perf_counter()
        two, _ = map_images(ais_log_likelihood, run.model, x, None, **kw)  # workers load the run
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        two, _ = map_images(ais_log_likelihood, run.model, x, None, **kw)  # the model is cached
        two_s = time.perf_counter() - t
    print(f"AIS (20 images x 16 chains x {args.ais_steps} distributions x 10 leapfrog): 1 worker "
          f"{one_s:.1f} s, 2 Ray shards {two_s:.1f} s warm ({cold_s:.1f} s loading the run) -> "
          f"{one_s / two_s:.2f}x warm, {one_s / cold_s:.2f}x cold (equal image by image: "
          f"{torch.equal(one, two)})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    figures.update(ais_ratio_warm=round(one_s / two_s, 3), ais_ratio_cold=round(one_s / cold_s, 3))
    print(json.dumps(figures))
    ray.shutdown()


if __name__ == "__main__":
    main()
