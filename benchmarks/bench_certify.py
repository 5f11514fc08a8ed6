"""Certainty per CPU-second: the BDMC gap each AIS start and kernel reaches, and what it costs.

A likelihood is worth its compute only when BDMC certifies it (gap + 2 s.e. <= 1 nat). On a
trained generator without an encoder (the main job's DCGAN, its shared flip-Bernoulli at the
level its evaluation chose), this runs BDMC on the same simulated images, in one process, for

- ``prior / hmc``: the prior start with Wu et al.'s HMC (10 leapfrog steps per distribution);
- ``infer / hmc``: the inference network's start (:mod:`genbench.metrics.inference`), same HMC;
- ``infer / hais``: the same start, Hamiltonian AIS (Sohl-Dickstein & Culpepper 2012): one
  leapfrog step per distribution and the momentum kept between them (``--persistence``), so
  ten times the distributions for the same gradients;

at schedules that spend the same generator gradients (an arm ``infer/hais:500`` sets its
distributions instead). Printed per
arm: the gap, its standard error, CPU-seconds, gradients, and gap x CPU-seconds (smaller is
better: the gap falls like 1/T in the long-schedule regime, so this is the cost of a
certificate at a given tolerance), and this machine's fp32 matmul peak measured in the same
run. The gradient's own GFLOP/s against that peak, and against plain PyTorch, is
``benchmarks/bench_generator.py``'s (40% of the peak on two threads).

    python benchmarks/bench_certify.py RUN_DIR [--images 8] [--chains 16] [--threads 2]

RUN_DIR is a finished ``genbench run dcgan`` folder (quick, mnist-5k): its metrics.json gives
the chosen flip level.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from peak import matmul_peak  # benchmarks/peak.py, beside this script

from genbench.loading import load_run
from genbench.metrics.ais import HMCConfig
from genbench.metrics.bdmc import bdmc
from genbench.metrics.estimates import mean_stderr
from genbench.metrics.inference import finish, simulate_moments
from genbench.metrics.obsmodel import ObservationModel
from genbench.nn import fuse_batchnorm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100, help="HMC arms' distributions (HAIS: x leapfrog)")
    ap.add_argument("--leapfrog", type=int, default=10)
    ap.add_argument("--persistence", type=float, default=0.9)
    ap.add_argument("--hais-leapfrog", type=int, default=1)
    ap.add_argument("--target", type=float, default=0.65, help="HAIS target acceptance")
    ap.add_argument("--arms", default="prior/hmc,infer/hmc,infer/hais")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run = load_run(args.run)
    model = fuse_batchnorm(run.model)
    metrics = json.loads((args.run / "metrics.json").read_text())
    flip = float(metrics["obs_flip"])
    obs = ObservationModel("bernoulli", flip)
    shape = run.data.info.shape
    peak = matmul_peak()

    t = time.process_time()
    fit = finish(simulate_moments(model, "bernoulli", 8192, seed=1), model, flip, seed=2)
    infer_cpu = time.process_time() - t
    out: dict[str, object] = {"threads": args.threads, "matmul_peak_gflops": round(peak, 1),
                              "flip": flip, "infer_fit_cpu_s": round(infer_cpu, 2)}

    arms = []
    for arm in args.arms.split(","):
        start, kernel = arm.split("/")
        kernel, _, given = kernel.partition(":")
        if kernel == "hmc":
            hmc, steps = HMCConfig(leapfrog=args.leapfrog), args.steps
        else:
            hmc = HMCConfig(leapfrog=args.hais_leapfrog, persistence=args.persistence,
                            target_accept=args.target)
            steps = args.steps * args.leapfrog // args.hais_leapfrog  # the same gradients
        steps = int(given) if given else steps
        t, w = time.process_time(), time.perf_counter()
        res = bdmc(model, obs, n=args.images, shape=shape, chains=args.chains, steps=steps, hmc=hmc,
                   seed=7, from_encoder=fit.encoder if start == "infer" else False)
        cpu, wall = time.process_time() - t, time.perf_counter() - w
        gap, se = mean_stderr(res.gap)
        grads = 2 * args.images * args.chains * (steps - 2) * hmc.leapfrog
        arms.append({"arm": arm, "distributions": steps, "leapfrog": hmc.leapfrog,
                     "persistence": hmc.persistence, "gap": round(gap, 3), "gap_stderr": round(se, 3),
                     "cpu_s": round(cpu, 1), "wall_s": round(wall, 1), "image_gradients": grads,
                     "gap_x_cpu_s": round(gap * cpu, 1)})
        print(json.dumps(arms[-1]), flush=True)
    out["arms"] = arms
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
