"""Conv DRAW's speed: training through genbench's runner against the straightforward loop,
IWAE and sampling throughput, and the compression metric's cost, in one run.

- ``plain``: the quick Conv DRAW (8 steps, 16 channels, 2 x 7 x 7 latents) trained on
  mnist-5k's 4,000 training images by hand: a ``DataLoader`` over the grey images, a Bernoulli
  draw per batch, zero / backward / step;
- ``genbench``: ``genbench run convdraw --dataset mnist-5k --preset quick --epochs E`` through
  the runner (checkpoints, history and the per-epoch sample grid in the wall time).

Then, on the trained genbench model: IWAE images/s at k = 100 (all T steps per importance
sample), samples/s, and the seconds of the ``compression`` metric on 100 test images (the
model's curve, then JPEG and JPEG 2000 over their settings grid). Each training arm runs in its
own process. On a shared machine set OMP_NUM_THREADS=1 and read the ratio, not the seconds.

    python benchmarks/bench_convdraw.py --epochs 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import torch


def plain_arm(epochs: int, out: mp.Queue) -> None:
    from genbench.contract import Batch
    from genbench.data import DataRequest, load_dataset
    from genbench.plugins import load_plugins
    from genbench.presets import PRESETS
    from genbench.registry import get_model
    from genbench.settings import resolve

    load_plugins()
    data = load_dataset(DataRequest("mnist-5k"))
    cls = get_model("convdraw").cls
    config, preset = resolve(cls.Config, cls.presets, PRESETS["quick"], {})
    torch.manual_seed(0)
    model = cls(config, data.info)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    grey = data.train.x.cpu().float() / 255  # the store holds uint8 intensities
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(grey),
                                         batch_size=preset.batch_size, shuffle=True)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        for (x,) in loader:
            loss = model.training_step(Batch(torch.bernoulli(x)))["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    out.put({"epoch_s": times})


def genbench_arm(epochs: int, out: mp.Queue) -> None:
    from genbench.data import DataRequest, load_dataset
    from genbench.loading import load_run
    from genbench.metrics.compression import compression_values
    from genbench.metrics.iwae import iwae_bound
    from genbench.plugins import load_plugins
    from genbench.training import RunSpec, execute, plan_run

    load_plugins()
    results = Path(tempfile.mkdtemp())
    data = load_dataset(DataRequest("mnist-5k"))
    spec = RunSpec(model="convdraw", dataset="mnist-5k", preset="quick", epochs=epochs,
                   results=results, device="cpu", metrics=("active_units",))
    t = time.perf_counter()
    outcome = execute(plan_run(spec, data))
    wall = time.perf_counter() - t - outcome.metrics.get("eval_seconds", 0.0)
    rows = (outcome.run_dir / "history.csv").read_text().splitlines()[1:]
    run = load_run(outcome.run_dir)
    model, x = run.model, run.data.eval_x("test", 100)
    t = time.perf_counter()
    iwae_bound(model, x[:20], k=100, seed=0, chunk=500)
    iwae_per_s = 20 / (time.perf_counter() - t)
    with torch.no_grad():
        t = time.perf_counter()
        model.sample(500, torch.Generator().manual_seed(0))
        sample_per_s = 500 / (time.perf_counter() - t)
    t = time.perf_counter()
    compression_values(model, x, seed=0, binarized=True)
    out.put({"epoch_s": [float(r.split(",")[1]) for r in rows], "wall_epoch_s": wall / epochs,
             "iwae_k100_images_per_s": iwae_per_s, "samples_per_s": sample_per_s,
             "compression_100_images_s": time.perf_counter() - t})


def run_arm(target, epochs: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(epochs, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    plain = run_arm(plain_arm, args.epochs)
    ours = run_arm(genbench_arm, args.epochs)
    report = {"threads": torch.get_num_threads(),
              "plain_epoch_s_median": round(statistics.median(plain["epoch_s"]), 2),
              "genbench_epoch_s_median": round(statistics.median(ours["epoch_s"]), 2),
              "genbench_wall_epoch_s": round(ours["wall_epoch_s"], 2),
              **{k: round(v, 2) for k, v in ours.items() if not k.startswith(("epoch", "wall"))}}
    report["speedup_loop"] = round(report["plain_epoch_s_median"] / report["genbench_epoch_s_median"], 2)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
