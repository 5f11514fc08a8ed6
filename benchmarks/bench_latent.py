"""Certification against latent size: quick DCGAN at latent_dim 10, 20 and 100 on mnist-5k.

Wu et al. (2017) compare VAEs and GANs at matched latent sizes (10 and 50) and report BDMC gaps
that grow with the size (0.93 for GAN-10, 10.05 for GAN-50 even at 10,000 distributions):
a sharper, higher-dimensional posterior is harder to anneal. This trains (or reuses) one quick
DCGAN per size in ``--results`` and evaluates its shared-family likelihood as ``genbench run``
does (inference-network start, pilot, AIS, BDMC as the certificate), then prints one row per
size: training and evaluation seconds, IWAE and AIS (shared), the pilot's verdict, the BDMC
gap with its standard error, and whether it is certified.

    OMP_NUM_THREADS=1 python benchmarks/bench_latent.py [--sizes 10,20,100] [--results DIR]

Each size trains and evaluates like the main job's DCGAN (minutes each on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json

import genbench

METRICS = ("iwae_shared", "ais_shared", "bdmc_shared")
COLUMNS = ("train_seconds", "_seconds_ais_shared", "_seconds_bdmc_shared", "test_iwae_shared",
           "test_ais_shared", "ais_pilot_gap_shared", "ais_needed_distributions_shared",
           "ais_pilot_stopped_shared", "ais_distributions_shared", "bdmc_gap_shared",
           "bdmc_gap_shared_stderr", "bdmc_images_shared", "ais_certified_shared")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,20,100")
    ap.add_argument("--results", default="results-latent")
    ap.add_argument("--dataset", default="mnist-5k")
    args = ap.parse_args()
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        (out,) = genbench.run("dcgan", dataset=args.dataset, overrides={"latent_dim": size},
                              results=args.results, metrics=METRICS, device="cpu", quiet=True)
        m = out.metrics
        rows.append({"latent_dim": size, **{k: m.get(k) for k in COLUMNS}})
        print(json.dumps(rows[-1]), flush=True)


if __name__ == "__main__":
    main()
