"""`genbench score` on 10,000 28x28 samples in the default feature space, statistics cached.

    python benchmarks/bench_score.py [--n 10000] [--threads 2] [--dataset mnist-5k]

Prints the time split into loading (reading and checking the samples, loading the data),
features (the samples' evaluator features, in blocks), real features (read from the
reference statistics `genbench stats` cached) and metrics (FID, KID, precision/recall,
density/coverage, FID's bootstrap, mode coverage, memorization), against the target of
30 s on 2 cores, with the CPU-seconds of all threads (``time.process_time``) and the float32
matmul rate measured just before and after (how busy the machine was); then the peak
memory of one scoring per N in a fresh process, which stays flat in N because features
are extracted a block at a time and distances are chunked.
The samples are training digits with noise (uint8), scored at n_quality = N. The first
pass (untimed) trains or loads the evaluator, caches the statistics and stores the floor.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peak import matmul_peak  # benchmarks/peak.py, beside this script


def make_samples(dataset: str, n: int, path: Path) -> None:
    from genbench.data import DataRequest, load_dataset

    x = load_dataset(DataRequest(dataset)).train.x[:, 0]  # uint8 (N, 28, 28)
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(len(x), (n,), generator=gen)
    noisy = x[idx].float() + 20 * torch.randn(n, *x.shape[1:], generator=gen)
    np.save(path, noisy.clamp(0, 255).round().to(torch.uint8).numpy())


def timed(module: Any, name: str, bucket: str, clock: dict[str, float]) -> None:
    """Wrap ``module.name`` so its wall time adds to ``clock[bucket]`` (outermost call only)."""
    inner: Callable[..., Any] = getattr(module, name)
    depth = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        depth[0] += 1
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                clock[bucket] += time.perf_counter() - start

    setattr(module, name, wrapper)


def score_once(samples: Path, dataset: str, n: int, results: Path) -> dict[str, float]:
    import genbench
    import genbench.data
    from genbench import scoring
    from genbench.metrics import quality

    clock: dict[str, float] = defaultdict(float)
    timed(scoring, "read_samples", "loading", clock)
    timed(scoring, "fit_to", "loading", clock)
    timed(genbench.data, "load_dataset", "loading", clock)
    timed(quality, "generated_features", "features", clock)
    timed(quality, "real_features", "real features (cached)", clock)
    start, cpu = time.perf_counter(), time.process_time()
    out = genbench.score(samples, dataset=dataset, name="bench", overrides={"n_quality": n},
                         results=results, device="cpu")
    total = time.perf_counter() - start
    clock["metrics"] = total - sum(clock.values())
    clock["total"] = total
    clock["cpu seconds (all threads)"] = time.process_time() - cpu
    assert out.metrics["status"] == "finished" and not out.metrics.get("not_applicable")
    return dict(clock)


def vm_hwm_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited across
    fork and exec from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mb(samples: Path, dataset: str, n: int, results: Path) -> float:
    """Peak RSS of a fresh process that scores ``n`` samples (statistics cached)."""
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import bench_score as b; "
            f"b.score_once(__import__('pathlib').Path({str(samples)!r}), {dataset!r}, {n}, "
            f"__import__('pathlib').Path({str(results)!r})); "
            "print(b.vm_hwm_mb())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--memory", default="2000,5000,10000",
                        help="N values for peak memory (empty: skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from genbench.scoring import make_stats

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        samples = folder / "samples.npy"
        make_samples(args.dataset, args.n, samples)
        make_stats(args.dataset, overrides={"n_quality": str(args.n)})  # cached statistics
        score_once(samples, args.dataset, args.n, folder / "results")  # warm: evaluator, floor
        before = matmul_peak(n=1024, repeats=20)  # how busy the machine was while timed
        clock = score_once(samples, args.dataset, args.n, folder / "results")
        after = matmul_peak(n=1024, repeats=20)
        print(json.dumps({k: round(v, 2) for k, v in clock.items()}, indent=1))
        print(f"{args.n} samples in {clock['total']:.1f} s on {args.threads} thread(s), "
              f"{clock['cpu seconds (all threads)']:.1f} CPU-seconds (target: under 30 s on 2 cores)")
        print(f"matmul peak now: {before:.1f} GFLOP/s before, {after:.1f} after (1024^2 float32, "
              f"{args.threads} thread(s)); the scoring took {clock['total'] * (before + after) / 2:.0f} "
              "GFLOP of matmul time at that rate (comparable across loads)")
        for n in (int(v) for v in args.memory.split(",") if v):
            make_stats(args.dataset, overrides={"n_quality": str(n)})
            np.save(folder / f"s{n}.npy", np.load(samples)[:n])
            rss = peak_rss_mb(folder / f"s{n}.npy", args.dataset, n, folder / "results")
            print(f"N = {n:6d}: peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
