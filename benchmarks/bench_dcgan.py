"""DCGAN epoch cost: genbench's runner against a minimal hand-written loop, in one run.

The 28x28 DCGAN (quick preset: 100-d z, width 32, Adam 2e-4 / beta1 0.5, batch 64) trains on
the same data in both arms, with the same networks and optimizers:

- ``hand``: the pytorch/examples dcgan/main.py loop written out: shuffle, binarize, one D
  step on a real and a fake batch, one G step, ``.item()`` of the losses;
- ``runner``: :func:`genbench.training.train_loop` on a planned run, i.e. the model's own
  ``training_step``, per-step stat sums, the per-epoch history.csv, the fixed-noise sample
  grid, the divergence checks and the end-of-epoch checkpoint, all inside the timed epoch.

The arms alternate epoch by epoch (runner, hand, hand, runner, ...) so that the load of a
shared machine hits both alike; printed: every epoch's seconds, the medians and their
ratio (target: runner / hand <= 1.05).

    python benchmarks/bench_dcgan.py --epochs 6 [--dataset fashion-mnist] [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

BATCH = 64


def hand_epoch(model: torch.nn.Module, opts: dict[str, torch.optim.Optimizer],
               x_all: torch.Tensor, epoch: int) -> float:
    """One epoch of the tutorial loop on ``model``'s networks; returns seconds."""
    G, D, latent = model.generator, model.discriminator, model.config.latent_dim
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(epoch)
    perm = torch.randperm(x_all.shape[0], generator=gen)
    for i in range(0, x_all.shape[0], BATCH):
        x = torch.bernoulli(x_all[perm[i : i + BATCH]].float() / 255, generator=gen) * 2 - 1
        fake = torch.tanh(G(torch.randn(x.shape[0], latent)))
        opts["discriminator"].zero_grad()
        real_out, fake_out = D(x), D(fake.detach())
        d_loss = (F.binary_cross_entropy_with_logits(real_out, torch.ones_like(real_out))
                  + F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out)))
        d_loss.backward()
        opts["discriminator"].step()
        opts["generator"].zero_grad()
        out = D(fake)
        g_loss = F.binary_cross_entropy_with_logits(out, torch.ones_like(out))
        g_loss.backward()
        opts["generator"].step()
        d_loss.item(), g_loss.item()
    return time.perf_counter() - start


def hand_optimizers(model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
    c = model.config
    return {"discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=c.lr,
                                              betas=(c.beta1, 0.999)),
            "generator": torch.optim.Adam(model.generator.parameters(), lr=c.lr,
                                          betas=(c.beta1, 0.999))}


def main() -> None:
    from genbench.data import DataRequest, load_dataset
    from genbench.plugins import load_plugins
    from genbench.training import Progress, RunSpec, SilentReporter, build_model, plan_run, train_loop

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs per arm")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_plugins()
    data = load_dataset(DataRequest(args.dataset))
    spec = RunSpec(model="dcgan", dataset=args.dataset, preset="quick", device="cpu",
                   results=Path(tempfile.mkdtemp()), overrides={"batch_size": str(BATCH)})
    plan = plan_run(spec, data)
    runner_model, hand_model = build_model(plan), build_model(plan)  # same seed, same weights
    runner_opts, hand_opts = runner_model.configure_optimizers(), hand_optimizers(hand_model)
    progress, reporter = Progress(), SilentReporter()
    times: dict[str, list[float]] = {"runner": [], "hand": []}

    def runner_epoch() -> float:
        epoch_plan = dataclasses.replace(plan, preset=plan.preset.with_overrides(epochs=progress.epoch + 1))
        start = time.perf_counter()
        train_loop(epoch_plan, runner_model, runner_opts, progress, reporter)
        return time.perf_counter() - start

    for e in range(args.epochs):
        order = ("runner", "hand") if e % 2 == 0 else ("hand", "runner")
        for arm in order:
            t = runner_epoch() if arm == "runner" else hand_epoch(hand_model, hand_opts, data.train.x, e)
            times[arm].append(t)
    med = {arm: statistics.median(ts) for arm, ts in times.items()}
    report = {"dataset": data.info.name, "train_images": len(data.train), "batch_size": BATCH,
              "threads": torch.get_num_threads(),
              **{f"{arm}_epoch_s": [round(t, 3) for t in ts] for arm, ts in times.items()},
              **{f"{arm}_median_s": round(m, 3) for arm, m in med.items()},
              "runner_over_hand": round(med["runner"] / med["hand"], 4),
              "history_rows": len(progress.history),
              "grids": len(list((plan.run_dir / "samples").glob("*.png")))}
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
