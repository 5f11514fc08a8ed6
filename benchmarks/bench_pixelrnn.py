"""PixelRNN training, exact log-likelihood and sampling speed, genbench against straightforward code.

Measures, in one run and one process, for the quick-preset PixelRNN on 28x28 binarized images
(Diagonal BiLSTM; ``--layer row`` for the Row LSTM):

1. this machine's fp32 matmul peak (as in benchmarks/bench_pixelcnn.py);
2. training, seconds per epoch of mnist-5k (4,000 images, batch 128; timed on a few steps and
   scaled): genbench's diagonal scan (the skewed map unbound once, each step only the rows of
   its diagonal inside the image) against the textbook one (index one skewed column per step,
   every row, state masked outside the image), with the loss of both compared;
3. test log-likelihood, images/s: ``genbench.metrics.exact.exact_log_likelihood`` against the
   tutorial way (``torch.distributions.Bernoulli`` on the logits, one batch);
4. sampling, images/s: the cached sampler (the LSTM states of the row above, one cell per
   layer per pixel) against a full network pass per pixel, from the same uniforms; the
   samples are compared pixel by pixel.

    python benchmarks/bench_pixelrnn.py                  # a few minutes on 2 quiet cores
    python benchmarks/bench_pixelrnn.py --naive-rows 2   # the full-pass sampler on 2 rows,
                                                         # scaled by 28/2 (its cost per
                                                         # pixel is constant)
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Bernoulli

from genbench.contract import Batch, DataInfo
from genbench.metrics.exact import exact_log_likelihood

# isort: split
# (genbench_models sorts as first- or third-party depending on the checkout)
from genbench_models import pixelrnn
from peak import matmul_peak  # benchmarks/peak.py, beside this script

TRAIN_IMAGES = 4000  # mnist-5k's training split


def model_for(layer: str) -> pixelrnn.PixelRNN:
    torch.manual_seed(0)
    info = DataInfo("bench", "dynamic", (1, 28, 28))
    cls = pixelrnn.PixelRNN
    quick = {k: v for k, v in cls.presets["quick"].items() if k in cls.Config.__dataclass_fields__}
    return cls(cls.Config(**{**quick, "layer": layer}), info)


def plain_diagonal_scan(pre: torch.Tensor, s2s: nn.Conv1d, groups: int) -> torch.Tensor:
    """The textbook scan: one skewed column indexed per step, every row, masked state."""
    n, _, rows, cols = pre.shape
    skewed = pixelrnn.skew(pre)
    valid = pixelrnn.skew(pre.new_ones(1, 1, rows, cols))[0, 0]
    h = c = pre.new_zeros(n, s2s.in_channels, rows)
    out = []
    for col in range(skewed.shape[-1]):
        c, h = pixelrnn.lstm_cell(skewed[..., col] + s2s(F.pad(h, (1, 0))), c, groups)
        c, h = c * valid[:, col], h * valid[:, col]
        out.append(h)
    return pixelrnn.unskew(torch.stack(out, -1))


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def train_epoch_seconds(model: pixelrnn.PixelRNN, x: torch.Tensor, steps: int) -> tuple[float, float]:
    """(seconds per epoch scaled from the best of ``steps`` Adam steps, the first loss)."""
    opt = model.configure_optimizers()
    first, best = math.nan, math.inf
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(steps):
        start = time.perf_counter()
        opt.zero_grad()
        loss = model.training_step(Batch(x))["loss"]
        loss.backward()
        opt.step()
        best = min(best, time.perf_counter() - start)
        first = loss.item() if step == 0 else first
    model.load_state_dict(state)
    return best * TRAIN_IMAGES / x.shape[0], first


def bench(layer: str, args: argparse.Namespace) -> None:
    model = model_for(layer)
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(args.batch, 1, 28, 28, generator=gen) < 0.2).float()

    ours, loss_ours = train_epoch_seconds(model, x, args.train_steps)
    line = f"[{layer}] training: genbench {ours:7.1f} s/epoch"
    if layer == "diagonal":
        scan, pixelrnn.diagonal_scan = pixelrnn.diagonal_scan, plain_diagonal_scan
        try:
            plain, loss_plain = train_epoch_seconds(model, x, args.train_steps)
        finally:
            pixelrnn.diagonal_scan = scan
        line += (f", textbook scan {plain:7.1f} s/epoch: {plain / ours:4.2f}x; "
                 f"losses differ by {abs(loss_ours - loss_plain):.1e} nats")
    print(line + f" (mnist-5k, batch {args.batch}, best of {args.train_steps} steps)", flush=True)

    model.eval()
    xt = (torch.rand(args.ll_images, 1, 28, 28, generator=gen) < 0.2).float()
    exact_log_likelihood(model, xt[:8])  # warm-up
    t_ours, ll = timed(lambda: exact_log_likelihood(model, xt))
    with torch.no_grad():
        t_plain, plain_ll = timed(lambda: Bernoulli(logits=model.logits(xt)[:, :, 0]).log_prob(xt)
                                  .flatten(1).sum(1))
    print(f"[{layer}] log-likelihood: genbench {args.ll_images / t_ours:7.1f} img/s, straightforward "
          f"{args.ll_images / t_plain:7.1f} img/s; max |difference| "
          f"{float((ll - plain_ll.double()).abs().max()):.1e} nats", flush=True)

    u = torch.rand(args.images, 1, 28, 28, generator=gen)
    t_fast, fast = timed(lambda: model.sample_from_noise(u))
    rows = args.naive_rows
    if rows >= 28:
        t_slow, slow = timed(lambda: model.sample_from_noise(u, cached=False))
        same = f"{int((fast != slow).sum())} of {fast.numel()} pixels differ"
    else:  # the first `rows` rows, scaled: a full pass per pixel costs the same at every pixel
        t_part, _ = timed(lambda: model.sample_from_noise(u[:, :, :rows], cached=False))
        t_slow = t_part * 28 / rows
        same = "identity not checked (--naive-rows < 28)"
    print(f"[{layer}] sampling {args.images} images: genbench {args.images / t_fast:8.3f} img/s, "
          f"full pass per pixel {args.images / t_slow:8.4f} img/s"
          f"{' (from ' + str(rows) + ' rows)' if rows < 28 else ''}: {t_slow / t_fast:6.1f}x; {same}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", choices=("diagonal", "row", "both"), default="both")
    parser.add_argument("--batch", type=int, default=128, help="training batch")
    parser.add_argument("--train-steps", type=int, default=3, help="training steps timed")
    parser.add_argument("--images", type=int, default=16, help="images sampled")
    parser.add_argument("--ll-images", type=int, default=500, help="images scored")
    parser.add_argument("--naive-rows", type=int, default=28,
                        help="rows the full-pass sampler runs (28: all, checks identity)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    print(f"fp32 matmul peak: {matmul_peak():.1f} GFLOP/s ({args.threads} thread(s)); "
          f"quick config {pixelrnn.PixelRNN.presets['quick']}", flush=True)
    for layer in (("diagonal", "row") if args.layer == "both" else (args.layer,)):
        bench(layer, args)


if __name__ == "__main__":
    main()
