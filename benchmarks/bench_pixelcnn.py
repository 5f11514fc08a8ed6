"""PixelCNN sampling and exact log-likelihood throughput, genbench against straightforward code.

Measures, in one run and one process, for the quick-preset PixelCNN on 28x28 images
(binarized: Bernoulli; continuous: 256-way categorical):

1. this machine's fp32 matmul peak (large square sgemm, best of several; as in
   benchmarks/bench_likelihood.py);
2. sampling, images/s: genbench's cached sampler (the vertical stack one row at a time, the
   horizontal stack only on the columns an output sees) against the straightforward one (a
   full network pass per pixel), from the same uniforms; the samples are compared pixel by
   pixel (float32: a pixel can differ only where a uniform falls within rounding of a CDF step);
3. test log-likelihood, images/s and fraction of peak (useful FLOPs: one full pass):
   ``genbench.metrics.exact.exact_log_likelihood`` against the tutorial way
   (``torch.distributions`` on channels-last logits, one batch).

    python benchmarks/bench_pixelcnn.py                  # ~ a few minutes on 2 cores
    python benchmarks/bench_pixelcnn.py --naive-rows 4   # straightforward sampler timed on
                                                         # 4 rows, scaled by 28/4 (its cost
                                                         # per pixel is constant)
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from genbench_models.pixelcnn import PixelCNN
from peak import matmul_peak  # benchmarks/peak.py, beside this script
from torch import nn
from torch.distributions import Bernoulli, Categorical

from genbench.contract import DataInfo
from genbench.metrics.exact import exact_log_likelihood


def model_for(observation: str) -> PixelCNN:
    torch.manual_seed(0)
    info = DataInfo("bench", "continuous" if observation == "gaussian" else "dynamic", (1, 28, 28),
                    observation=observation)
    config = PixelCNN.Config(**{k: v for k, v in PixelCNN.presets["quick"].items()
                                if k in PixelCNN.Config.__dataclass_fields__})
    return PixelCNN(config, info).eval()


def pass_flops(model: PixelCNN) -> float:
    """Multiply-adds x 2 of one full pass on one image (convolutions; the gates are free)."""
    total = 0.0

    def count(mod: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(mod, nn.Conv2d):
            total += 2.0 * out.numel() * mod.in_channels * math.prod(mod.kernel_size)

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    x = torch.zeros(1, *model.info.shape)
    with torch.no_grad():
        model.log_prob(x)
    for h in hooks:
        h.remove()
    # the masked horizontal convolutions go through F.conv2d, not the module: add them
    for layer in model.layers:
        total += 2.0 * math.prod(model.info.shape[1:]) * layer.h_conv.in_channels \
            * layer.h_conv.out_channels * math.prod(layer.h_conv.kernel_size)
    return total


@torch.no_grad()
def plain_log_prob(model: PixelCNN, x: torch.Tensor) -> torch.Tensor:
    """The tutorial way: one batch, logits channels-last, torch.distributions' log_prob."""
    values = model.to_values(x)
    logits = model.logits(model.to_inputs(values), None)  # (N, C, levels, H, W)
    if model.categorical:
        dist = Categorical(logits=logits.permute(0, 1, 3, 4, 2))
        return dist.log_prob(values).flatten(1).sum(1) + model.info.dim * math.log(256)
    return Bernoulli(logits=logits[:, :, 0]).log_prob(values).flatten(1).sum(1)


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench(observation: str, args: argparse.Namespace, peak: float) -> None:
    model = model_for(observation)
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(args.images, 1, 28, 28, generator=gen)
    t_fast, fast = timed(lambda: model.sample_from_noise(u))
    rows = args.naive_rows
    if rows >= 28:
        t_slow, slow = timed(lambda: model.sample_from_noise(u, cached=False))
        same = f"{int((fast != slow).sum())} of {fast.numel()} pixels differ"
    else:  # the first `rows` rows, scaled: a full pass per pixel costs the same at every pixel
        part = u[:, :, :rows]
        t_part, _ = timed(lambda: model.sample_from_noise(part, cached=False))
        t_slow = t_part * 28 / rows
        same = "identity not checked (--naive-rows < 28)"
    print(f"[{observation}] sampling {args.images} images: genbench {args.images / t_fast:8.2f} img/s, "
          f"straightforward {args.images / t_slow:8.3f} img/s"
          f"{' (from ' + str(rows) + ' rows)' if rows < 28 else ''}: {t_slow / t_fast:5.1f}x; {same}")

    flops = pass_flops(model)
    x = torch.rand(args.ll_images, 1, 28, 28, generator=gen)
    if observation == "bernoulli":
        x = (x < 0.3).float()
    exact_log_likelihood(model, x[:8])  # warm-up
    t_ours, ours = timed(lambda: exact_log_likelihood(model, x))
    t_plain, plain = timed(lambda: plain_log_prob(model, x))
    diff = float((ours - plain.double()).abs().max())
    for name, t in (("genbench", t_ours), ("straightforward", t_plain)):
        rate = args.ll_images / t
        print(f"[{observation}] log-likelihood {name:>15}: {rate:8.1f} img/s, "
              f"{rate * flops / 1e9:6.2f} GFLOP/s = {rate * flops / 1e9 / peak:5.1%} of peak")
    print(f"[{observation}] one pass = {flops / 1e6:.1f} MFLOP/image; max |difference| {diff:.2e} nats")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images sampled")
    parser.add_argument("--ll-images", type=int, default=500, help="images scored")
    parser.add_argument("--naive-rows", type=int, default=28,
                        help="rows the straightforward sampler runs (28: all, checks identity)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--observation", choices=("bernoulli", "gaussian", "both"), default="both")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    peak = matmul_peak()
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s ({args.threads} thread(s)); "
          f"quick config {PixelCNN.presets['quick']}")
    kinds = ("bernoulli", "gaussian") if args.observation == "both" else (args.observation,)
    for kind in kinds:
        bench(kind, args, peak)


if __name__ == "__main__":
    main()
