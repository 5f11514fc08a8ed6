"""AIS convergence per CPU-second: prior-started against encoder-started, on exact PPCA.

A probabilistic PCA (tests/ppca_plugin.py, fitted in closed form) has an exact log p(x), so
the error of an AIS estimate is known. For each start (the prior; q(z|x), the exact posterior
made deliberately imperfect: std widened by ``--inflate`` and mean shifted by ``--shift``, as
an amortized encoder is), the number of intermediate distributions doubles from ``--start``;
each run reports its mean error against the truth, its wall and CPU time, and the first run
within ``--tol`` nats of the truth is the time-to-converge figure. The doubling stopping rule
genbench uses (two successive runs within ``ais_tol``) is evaluated alongside, to show whether
it stops where the truth says it may.

    OMP_NUM_THREADS=1 python benchmarks/bench_ais_convergence.py
    python benchmarks/bench_ais_convergence.py --images 20 --chains 16 --max-steps 3200 --data mnist
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
from torch.distributions import Independent, Normal

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from ppca_plugin import PPCA  # noqa: E402

from genbench.data import DataRequest, load_dataset  # noqa: E402
from genbench.metrics.ais import HMCConfig, ais_log_likelihood  # noqa: E402
from genbench.metrics.obsmodel import ObservationModel  # noqa: E402


class WidenedEncoder(torch.nn.Module):
    """The PPCA with an imperfect encoder: diagonal, widened and shifted exact posterior."""

    def __init__(self, ppca: PPCA, inflate: float, shift: float) -> None:
        super().__init__()
        self.ppca, self.inflate, self.shift = ppca, inflate, shift

    def prior(self):
        return self.ppca.prior()

    def decode(self, z):
        return self.ppca.decode(z)

    def generate(self, z):
        return self.ppca.generate(z)

    def encode(self, x):
        q = self.ppca.encode(x)
        sd = q.covariance_matrix.diagonal(dim1=-2, dim2=-1).sqrt() * self.inflate
        return Independent(Normal(q.loc + self.shift * sd, sd), 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="synthetic", help="dataset (continuous variant)")
    ap.add_argument("--latent", type=int, default=10)
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--chains", type=int, default=16)
    ap.add_argument("--leapfrog", type=int, default=10)
    ap.add_argument("--start", type=int, default=10)
    ap.add_argument("--max-steps", type=int, default=2560)
    ap.add_argument("--tol", type=float, default=0.5)
    ap.add_argument("--inflate", type=float, default=1.5)
    ap.add_argument("--shift", type=float, default=0.5, help="mean shift in posterior stds")
    ap.add_argument("--budget", type=float, default=120.0, help="CPU seconds per start")
    args = ap.parse_args()

    torch.set_num_threads(1)
    data = load_dataset(DataRequest(args.data, variant="continuous"))
    ppca = PPCA(PPCA.Config(latent_dim=args.latent), data.info)
    ppca.fit(data.eval_x("train"))
    ppca.eval().requires_grad_(False)
    model = WidenedEncoder(ppca, args.inflate, args.shift)
    x = data.eval_x("test", args.images)
    truth = float(ppca.log_px(x).double().mean())
    print(f"PPCA d={args.latent} on {args.data} (D={x[0].numel()}), s={float(ppca.s):.4f}; "
          f"{args.images} test images, exact mean log p(x) {truth:.3f} nats; {args.chains} chains x "
          f"{args.leapfrog} leapfrog; encoder std x{args.inflate}, mean shifted {args.shift} std")
    obs = ObservationModel("decoder")
    hmc = HMCConfig(leapfrog=args.leapfrog)
    for start in ("prior", "encoder"):
        steps, spent, prev, first, stop_rule = args.start, 0.0, None, None, None
        print(f"\n{start}-started AIS")
        print(f"{'distributions':>13} {'mean est':>10} {'error':>8} {'cpu s':>7} {'cum cpu s':>9}")
        while steps <= args.max_steps and spent < args.budget:
            t0 = time.process_time()
            est, _ = ais_log_likelihood(model, obs, x, chains=args.chains, steps=steps, hmc=hmc, seed=steps,
                                        from_encoder=start == "encoder")
            cpu = time.process_time() - t0
            spent += cpu
            mean = float(est.mean())
            err = mean - truth
            print(f"{steps:>13} {mean:>10.3f} {err:>8.3f} {cpu:>7.2f} {spent:>9.2f}")
            if first is None and abs(err) <= args.tol:
                first = (steps, spent)
            if stop_rule is None and prev is not None and abs(mean - prev) <= args.tol:
                stop_rule = (steps, spent, err)
            prev, steps = mean, 2 * steps
        if first:
            print(f"  within {args.tol} nats of the truth at {first[0]} distributions, "
                  f"{first[1]:.2f} cumulative CPU s")
        else:
            print(f"  never within {args.tol} nats of the truth (up to {steps // 2} distributions, "
                  f"{spent:.1f} CPU s)")
        if stop_rule:
            print(f"  genbench's doubling rule (two runs within {args.tol}) stops at {stop_rule[0]} "
                  f"distributions, {stop_rule[1]:.2f} CPU s, true error {stop_rule[2]:+.3f} nats")
        else:
            print("  genbench's doubling rule never stopped: reported as not converged")
    _ = math  # keep the import for readers adapting the figures


if __name__ == "__main__":
    main()
