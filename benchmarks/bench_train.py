"""Training speed: genbench's runner against the tutorial VAE loop, in one run.

The quick VAE (784-400-20, batch 128, Adam 1e-3) trains for a few epochs on the 60,000
Fashion-MNIST training images (Debian's `dataset-fashion-mnist`, MNIST's size) twice:

- ``tutorial``: pytorch/examples vae/main.py as people copy it: a torchvision dataset with
  ``ToTensor()`` behind a ``DataLoader``, BCE on sigmoid outputs;
- ``genbench``: ``genbench run vae --dataset fashion-mnist --set max_train=60000`` through
  the runner (data as one device tensor, dynamic binarization per batch, checkpoints,
  history and the per-epoch sample grid included in the wall time).

Each arm runs in its own process (so peak memory is its own). Printed: seconds per epoch
(median of the loop, and the whole wall time per epoch for genbench), the ratio, peak RSS,
and achieved GFLOP/s against this machine's fp32 matmul peak measured in the same run.

    python benchmarks/bench_train.py --epochs 5
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peak import matmul_peak  # benchmarks/peak.py, beside this script

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
D, H, Z, BATCH = 784, 400, 20, 128


def flops_per_image() -> float:
    """Forward matmul FLOPs of 784-400-(20,20)-400-784 times 3 (forward + backward)."""
    forward = 2 * (D * H + H * 2 * Z + Z * H + H * D)
    return 3 * forward


def tutorial_arm(epochs: int, out: mp.Queue) -> None:
    from torch import nn
    from torch.nn import functional as F
    from torchvision import datasets, transforms

    root = Path(tempfile.mkdtemp())
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in DEBIAN.glob("*.gz"):  # torchvision wants the IDX files unzipped
        with gzip.open(f) as src, open(raw / f.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    data = datasets.FashionMNIST(root, train=True, download=False, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(data, batch_size=BATCH, shuffle=True)

    class VAE(nn.Module):  # pytorch/examples vae/main.py
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(D, H), nn.Linear(H, Z), nn.Linear(H, Z)
            self.fc3, self.fc4 = nn.Linear(Z, H), nn.Linear(H, D)

        def forward(self, x):
            h = F.relu(self.fc1(x.view(-1, D)))
            mu, logvar = self.fc21(h), self.fc22(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    torch.manual_seed(0)
    model = VAE()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        for x, _ in loader:
            opt.zero_grad()
            recon, mu, logvar = model(x)
            bce = F.binary_cross_entropy(recon, x.view(-1, D), reduction="sum")
            kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            (bce + kld).backward()
            opt.step()
        times.append(time.perf_counter() - t)
    shutil.rmtree(root)
    out.put({"epoch_s": times, "wall_epoch_s": times,
             "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def genbench_arm(epochs: int, out: mp.Queue) -> None:
    from genbench.data import DataRequest, load_dataset
    from genbench.plugins import load_plugins
    from genbench.training import RunSpec, execute, plan_run

    load_plugins()
    results = Path(tempfile.mkdtemp())
    data = load_dataset(DataRequest("fashion-mnist"))
    # all 60,000 training images (no validation split held out), to match the tutorial
    data = type(data)(data.info, type(data.train)(torch.cat([data.train.x, data.val.x])),
                      data.val, data.test)
    spec = RunSpec(model="vae", dataset="fashion-mnist", preset="quick", epochs=epochs,
                   results=results, device="cpu", metrics=("active_units",),
                   overrides={"hidden": "400", "latent_dim": "20", "lr": "1e-3",
                              "batch_size": "128"})
    t = time.perf_counter()
    outcome = execute(plan_run(spec, data))
    wall = time.perf_counter() - t - outcome.metrics.get("eval_seconds", 0.0)
    rows = (outcome.run_dir / "history.csv").read_text().splitlines()[1:]
    times = [float(r.split(",")[1]) for r in rows]
    shutil.rmtree(results)
    out.put({"epoch_s": times, "wall_epoch_s": [wall / epochs] * epochs,
             "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


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
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if not DEBIAN.exists():
        raise SystemExit("needs Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist")
    peak = matmul_peak(repeats=10)
    tutorial = run_arm(tutorial_arm, args.epochs)
    ours = run_arm(genbench_arm, args.epochs)
    flops_epoch = flops_per_image() * 60_000
    report = {"matmul_peak_gflops": round(peak, 1), "threads": torch.get_num_threads()}
    for name, arm in (("tutorial", tutorial), ("genbench", ours)):
        med = statistics.median(arm["epoch_s"])
        report[name] = {
            "epoch_s_median": round(med, 3),
            "epoch_s_all": [round(t, 3) for t in arm["epoch_s"]],
            "wall_epoch_s": round(statistics.mean(arm["wall_epoch_s"]), 3),
            "gflops": round(flops_epoch / med / 1e9, 1),
            "fraction_of_peak": round(flops_epoch / med / 1e9 / peak, 3),
            "peak_rss_mb": round(arm["peak_rss_mb"]),
        }
    report["speedup_loop"] = round(report["tutorial"]["epoch_s_median"]
                                   / report["genbench"]["epoch_s_median"], 2)
    report["speedup_wall"] = round(report["tutorial"]["epoch_s_median"]
                                   / report["genbench"]["wall_epoch_s"], 2)
    report["arithmetic_at_peak_s"] = round(flops_epoch / peak / 1e9, 3)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
