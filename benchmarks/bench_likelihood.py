"""Likelihood-evaluation throughput against this machine's fp32 matmul peak, in one run.

Measures, in the same process and minutes:

1. the fp32 matmul peak (large square sgemm, best of several);
2. IWAE at k = 5000 for the 784-400-20 Bernoulli VAE (models/vae.py, quick config):
   genbench's ``iwae_bound`` against a plain chunked PyTorch loop (torch.distributions,
   re-encoding x for every chunk, as tutorials and pythae do), in images/s and as a
   fraction of peak (useful FLOPs: the decoder for every draw, the encoder once per image);
3. AIS with HMC (16 chains, 10 leapfrog steps) in chain transitions/s and leapfrog
   gradients/s, with its fraction of peak (a gradient costs the decoder's forward matmuls
   twice: forward, and backward to z);
4. peak memory of each phase (each runs in a forked child), and IWAE memory at 10x the k.

Run on a quiet machine (figures are ratios measured in the same run):

    python benchmarks/bench_likelihood.py --images 20 --ais-steps 50
    python benchmarks/bench_likelihood.py --threads 1 --clock cpu   # steadier when shared
    python benchmarks/bench_likelihood.py --profile   # where genbench's IWAE time goes
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch
from genbench_models.vae import VAE
from peak import matmul_peak  # benchmarks/peak.py, beside this script
from torch.distributions import Bernoulli, Normal

from genbench.contract import DataInfo
from genbench.metrics.ais import HMCConfig, ais_log_likelihood
from genbench.metrics.iwae import iwae_bound
from genbench.metrics.obsmodel import ObservationModel

INFO = DataInfo(name="bench", variant="dynamic", shape=(1, 28, 28))


CLOCK: Callable[[], float] = time.perf_counter  # or time.process_time (--clock cpu)


def vae_model() -> VAE:
    torch.manual_seed(0)
    return VAE(VAE.Config(hidden=(400,), latent_dim=20), INFO).eval()


def iwae_flops(images: int, k: int, d: int = 20, h: int = 400, p: int = 784) -> float:
    """Useful multiply-adds x 2: the decoder for every draw, the encoder once per image."""
    return 2.0 * images * (k * (d * h + h * p) + (p * h + h * 2 * d))


@torch.no_grad()
def plain_iwae(model: VAE, x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """The tutorial way: per image and chunk, encode, rsample, decode, distributions' log_prob."""
    prior = Normal(torch.zeros(20), torch.ones(20))
    out = []
    for xi in x:
        log_w = []
        for _ in range(0, k, chunk):
            mu, logvar = model.encoder(xi[None]).chunk(2, dim=-1)  # re-encoded every chunk
            q = Normal(mu, (0.5 * logvar).exp())
            z = q.rsample((chunk,)).squeeze(1)  # (chunk, D)
            px = Bernoulli(logits=model.decoder(z))
            log_w.append(px.log_prob(xi.expand(chunk, -1, -1, -1)).flatten(1).sum(1)
                         + prior.log_prob(z).sum(1) - q.log_prob(z).squeeze(1).sum(1))
        out.append(torch.logsumexp(torch.cat(log_w), 0) - math.log(k))
    return torch.stack(out)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def timed(fn: Callable[[], object]) -> float:
    start = CLOCK()
    fn()
    return CLOCK() - start


def run_phase(name: str, args: argparse.Namespace) -> dict[str, float]:
    """One measurement, in this (fresh) process: seconds and peak memory above the start."""
    model = vae_model()
    gen = torch.Generator().manual_seed(1)
    x = torch.bernoulli(torch.rand(args.images, 1, 28, 28, generator=gen) * 0.3)
    xa = torch.bernoulli(torch.rand(args.ais_images, 1, 28, 28, generator=gen) * 0.3)
    hmc = HMCConfig(leapfrog=10)
    phases: dict[str, Callable[[], object]] = {
        "peak": lambda: None,
        "genbench": lambda: iwae_bound(model, x, k=args.k, seed=0, chunk=args.chunk),
        "plain": lambda: plain_iwae(model, x, args.k, args.plain_chunk),
        "big_k": lambda: iwae_bound(model, x[:1], k=10 * args.k, seed=0, chunk=args.chunk),
        "ais": lambda: ais_log_likelihood(model, ObservationModel("decoder"), xa, chains=args.ais_chains,
                                          steps=args.ais_steps, hmc=hmc, seed=0),
    }
    warm_up = {"genbench": lambda: iwae_bound(model, x[:1], k=1000, seed=1, chunk=args.chunk),
               "big_k": lambda: iwae_bound(model, x[:1], k=1000, seed=1, chunk=args.chunk),
               "plain": lambda: plain_iwae(model, x[:1], 1000, args.plain_chunk),
               "ais": lambda: ais_log_likelihood(model, ObservationModel("decoder"), xa[:4], chains=4,
                                                 steps=3, hmc=hmc, seed=1)}
    warm_up.get(name, lambda: None)()  # first-call costs (thread pool, allocator) not timed
    base = _rss_mb()
    out = {"gflops": matmul_peak(clock=CLOCK)} if name == "peak" else {"seconds": timed(phases[name])}
    out["mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base  # kB on Linux
    return out


def measured(name: str, argv: list[str]) -> dict[str, float]:
    """Run one phase in a fresh interpreter (forking a process with OpenMP threads can hang)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--phase", name, *argv]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def profile_iwae(model: VAE, x: torch.Tensor, k: int, chunk: int) -> None:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        iwae_bound(model, x, k=k, seed=0, chunk=chunk)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def parse() -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4, help="test images for IWAE")
    ap.add_argument("--k", type=int, default=5000)
    ap.add_argument("--chunk", type=int, default=1000, help="genbench rows per decoder pass")
    ap.add_argument("--plain-chunk", type=int, default=500, help="draws per chunk of the plain loop")
    ap.add_argument("--ais-images", type=int, default=64, help="x chains = rows per batch")
    ap.add_argument("--ais-chains", type=int, default=16)
    ap.add_argument("--ais-steps", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="cpu: process CPU time, steadier on a shared machine (use with --threads 1)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args()
    argv = [a for a in sys.argv[1:] if a != "--profile"]
    return args, argv


def main() -> None:
    args, argv = parse()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.phase:
        print(json.dumps(run_phase(args.phase, args)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock")
    if args.profile:
        x = torch.bernoulli(torch.rand(1, 1, 28, 28) * 0.3)
        profile_iwae(vae_model(), x, args.k, args.chunk)
        return
    peak = measured("peak", argv)["gflops"]
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s")
    flops = iwae_flops(args.images, args.k)
    res = {name: measured(name, argv) for name in ("genbench", "plain", "big_k", "ais")}
    for name, key in (("genbench", "genbench"), ("plain loop", "plain")):
        s, mb = res[key]["seconds"], res[key]["mb"]
        print(f"IWAE k={args.k} {name:>10}: {args.images / s:7.2f} images/s, "
              f"{flops / s / 1e9:6.1f} GFLOP/s = {flops / s / 1e9 / peak:5.1%} of peak, "
              f"peak mem +{mb:.0f} MB")
    print(f"IWAE speed-up over the plain loop: {res['plain']['seconds'] / res['genbench']['seconds']:.2f}x")
    print(f"IWAE peak mem at k={10 * args.k} (1 image): +{res['big_k']['mb']:.0f} MB (flat in k)")
    transitions = args.ais_images * args.ais_chains * (args.ais_steps - 2)
    grads = transitions * 10 + args.ais_images * args.ais_chains
    ais_flops = grads * 2 * 2.0 * (20 * 400 + 400 * 784)
    s = res["ais"]["seconds"]
    print(f"AIS {args.ais_chains} chains x {args.ais_steps} steps x {args.ais_images} images: "
          f"{transitions / s:.0f} chain transitions/s, {grads / s:.0f} leapfrog gradients/s, "
          f"{ais_flops / s / 1e9:.1f} GFLOP/s = {ais_flops / s / 1e9 / peak:.1%} of peak, "
          f"peak mem +{res['ais']['mb']:.0f} MB")


if __name__ == "__main__":
    main()
