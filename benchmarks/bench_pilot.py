"""What the pilot sees, and what its verdict costs: the figures behind ``certify.pilot_verdict``.

For each finished quick run given (``RUN`` for the shared family, ``RUN:own`` for the own
decoder), this anneals the pilot's simulated images exactly as the likelihood metric does
(its noise level, start, seed and HMC) at every schedule the pilot may look at (125, 250 and
500 at quick), and prints one row per run: each look's BDMC gap with its standard error and
CPU-seconds, the verdict ``pilot_verdict`` gives after each look, and the answer of the full
BDMC the run recorded (its gap at the schedule AIS ran, ``ais_certified``). A verdict
separates well when it stops the runs whose recorded AIS is not certified and lets on those
whose AIS is. The last columns are the ratio the pilot is there for: its chain-steps against
those of the AIS and BDMC it spares when it stops (AIS once at the longest doubling on
``ais_n`` images, BDMC forward and reverse there on ``bdmc_n``).

    OMP_NUM_THREADS=1 python benchmarks/bench_pilot.py RUN [RUN:own ...]

This machine's fp32 matmul peak on one thread is printed first, to compare sittings.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from peak import matmul_peak  # benchmarks/peak.py, beside this script

from genbench.loading import load_run
from genbench.metrics import EvalContext
from genbench.metrics import likelihood as lk
from genbench.metrics.certify import gap_floor, pilot_schedules, pilot_verdict
from genbench.metrics.estimates import mean_stderr, own_observation
from genbench.metrics.features import default_cache_dir
from genbench.nn import fuse_batchnorm


def looks(arg: str) -> dict[str, object]:
    path, _, which = arg.partition(":")
    run = load_run(Path(path), "cpu", None)
    recorded = json.loads((Path(path) / "metrics.json").read_text())
    ctx = EvalContext(model=fuse_batchnorm(run.model.eval()), data=run.data, preset=run.preset,
                      seed=run.seed, device=torch.device("cpu"), cache_dir=default_cache_dir())
    suffix = "" if which == "own" else "_shared"
    if which == "own":
        obs = own_observation(ctx)
    else:  # the level the run chose, not chosen again
        key = "obs_sigma" if run.data.info.observation == "gaussian" else "obs_flip"
        ctx.results[key] = recorded[key]
        obs, _ = lk.shared_observation(ctx)
    start = lk._ais_init(ctx, obs)
    p = ctx.preset
    most = max(p.ais_max_steps, p.ais_steps)
    seen, rows, decided = [], [], None
    schedules = pilot_schedules(p.pilot_steps, p.ais_steps)
    for i, steps in enumerate(schedules):  # every look, also past the one that decides
        t = time.process_time()
        res = lk.pilot_look(ctx, obs, start, steps)
        gap, se = mean_stderr(res.gap)
        seen.append((steps, gap, se))
        verdict = None if i == 0 else pilot_verdict(seen, i == len(schedules) - 1,
                                                    gap_floor(res.gap, p.bdmc_n), p.certify_tol, most)
        if verdict is not None and decided is None:
            decided = (i, *verdict)
        rows.append({"distributions": steps, "gap": round(gap, 2), "stderr": round(se, 2),
                     "cpu_s": round(time.process_time() - t, 1),
                     "verdict": None if verdict is None else {"decay": verdict[0], "needed": verdict[1]}})
    longest = p.ais_steps
    while 2 * longest <= most:
        longest *= 2
    paid = 2 * len(res.gap) * sum(schedules[: decided[0] + 1]) if decided else 0  # fwd + rev, per chain
    spared = longest * (p.ais_n + 2 * p.bdmc_n)
    return {"run": arg, "looks": rows, "decided_at": decided and schedules[decided[0]],
            "stops": bool(decided and decided[2] > most),
            "recorded_gap": recorded.get(f"bdmc_gap{suffix}"),
            "recorded_distributions": recorded.get(f"bdmc_distributions{suffix}"),
            "recorded_certified": recorded.get(f"ais_certified{suffix}"),
            "pilot_chain_steps": paid, "spared_chain_steps": spared,
            "pilot_over_spared": round(paid / spared, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="run folders; RUN:own for the own decoder")
    args = ap.parse_args()
    print(json.dumps({"threads": torch.get_num_threads(), "matmul_peak_gflops": round(matmul_peak(), 1)}))
    for arg in args.runs:
        print(json.dumps(looks(arg)), flush=True)


if __name__ == "__main__":
    main()
