"""The HMC gradient of a convolutional generator: genbench's against the plain PyTorch one.

AIS and BDMC under the shared observation family spend nearly all their time in one
operation: log p(x | z) and its gradient in z for every chain, through the generator,
forward and back (11 times per HMC transition). For the 28x28 DCGAN (quick preset: 100-d z,
width 32) on 20 images x 16 chains this compares, in one run and on the same weights:

- ``plain``: the generator as ``torch.nn`` builds it (``nn.ConvTranspose2d``, BatchNorm in
  eval mode), ``autograd.grad`` of the summed log-likelihood;
- ``genbench``: what the evaluator runs, :func:`genbench.nn.fuse_batchnorm` of the model
  (whose decoders use :class:`genbench.nn.ConvTranspose2d`) through
  :meth:`ObservationModel.log_lik_and_grad` (closed-form output gradient).

Printed: milliseconds per gradient, achieved GFLOP/s (the three layers' multiply-adds,
forward and input-gradient), this machine's fp32 matmul peak measured in the same run, the
ratio plain / genbench, and the largest difference between the two gradients.

    python benchmarks/bench_generator.py [--threads 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from peak import matmul_peak  # benchmarks/peak.py, beside this script
from torch import nn


def _timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


def plain_copy(model: nn.Module) -> nn.Module:
    """The same model with every genbench ConvTranspose2d swapped for torch's own."""
    import copy

    from genbench.nn import ConvTranspose2d

    plain = copy.deepcopy(model)
    for module in plain.modules():
        for name, child in module.named_children():
            if isinstance(child, ConvTranspose2d):
                ref = nn.ConvTranspose2d(child.in_channels, child.out_channels, child.kernel_size,
                                         child.stride, child.padding, child.output_padding)
                ref.load_state_dict(child.state_dict())
                setattr(module, name, ref)
    return plain.eval()


def main() -> None:
    from genbench_models.dcgan import DCGAN, DCGANConfig

    from genbench.contract import DataInfo
    from genbench.metrics.obsmodel import ObservationModel
    from genbench.nn import fuse_batchnorm

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--chains", type=int, default=16)
    parser.add_argument("--images", type=int, default=20)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = DataInfo("mnist", "dynamic", (1, 28, 28), 10)
    cfg = DCGANConfig()
    model = DCGAN(cfg, info)
    model.train()
    with torch.no_grad():  # BatchNorm statistics away from their initial identity
        for _ in range(3):
            model.generate(torch.randn(64, cfg.latent_dim))
    model.eval().requires_grad_(False)
    fast, plain = fuse_batchnorm(model), plain_copy(model)
    x = torch.bernoulli(torch.rand(args.images, 1, 28, 28))
    z = torch.randn(args.chains, args.images, cfg.latent_dim)
    obs = ObservationModel("bernoulli", 0.02)
    xf = x.flatten(1)

    def plain_grad() -> torch.Tensor:
        zr = z.detach().requires_grad_(True)
        mean = plain.generate(zr.flatten(0, 1)).view(args.chains, args.images, -1)
        pr = 0.02 + 0.96 * mean.clamp(0, 1)
        ll = (xf * pr.log() + (1 - xf) * torch.log1p(-pr)).sum(-1)
        return torch.autograd.grad(ll.sum(), zr)[0]

    def genbench_grad() -> torch.Tensor:
        return obs.log_lik_and_grad(fast, z, None, x, need_value=False)[1]

    diff = float((plain_grad() - genbench_grad()).abs().max() / plain_grad().abs().max())
    w, d = cfg.width, cfg.latent_dim
    macs = d * 4 * w * 49 + 49 * 4 * w * 2 * w * 16 + 14 * 14 * 2 * w * 16
    flops = 2 * macs * 2 * args.chains * args.images  # forward and input gradient
    times: dict[str, list[float]] = {"plain": [], "genbench": []}
    plain_grad(), genbench_grad()  # warm-up
    for r in range(args.repeats):  # alternate the arms so a shared machine's load hits both
        for arm, f in ((("plain", plain_grad), ("genbench", genbench_grad))[:: 1 if r % 2 else -1]):
            times[arm].append(_timed(f))
    peak = matmul_peak()
    med = {arm: statistics.median(ts) for arm, ts in times.items()}
    report = {"threads": torch.get_num_threads(), "chains_x_images": args.chains * args.images,
              "matmul_peak_gflops": round(peak, 1),
              **{f"{arm}_ms": round(1e3 * m, 2) for arm, m in med.items()},
              **{f"{arm}_gflops": round(flops / m / 1e9, 1) for arm, m in med.items()},
              **{f"{arm}_of_peak": round(flops / m / 1e9 / peak, 3) for arm, m in med.items()},
              "plain_over_genbench": round(med["plain"] / med["genbench"], 2),
              "max_relative_gradient_difference": diff}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
