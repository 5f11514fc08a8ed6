"""A regressor that reads set generative factors back off an image, to measure edits.

On ``*-morpho`` data an edited digit is measured by the same code that measured the real
ones. On rendered data (``synthetic-3d``) the factors were *set* by the renderer, and an
edited image has no renderer call behind it: its azimuth, elevation and light are read by a
small CNN (the evaluator's architecture, :class:`~genbench.metrics.features.EvaluatorCNN`)
trained to regress the standardized factors of the training images. Its test R^2 per factor
says how far the measurement can be trusted; it is cached by the training data's hash.
"""

from __future__ import annotations

import hashlib
import inspect
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from genbench.data import DataBundle
from genbench.errors import GenbenchError
from genbench.metrics.features import EvaluatorCNN, data_digest, mean_images

SEED = 0


class FactorRegressor(torch.nn.Module):
    """(N, C, H, W) in [0, 1] -> (N, M) factors in their own units."""

    def __init__(self, shape: tuple[int, int, int], factors: int) -> None:
        super().__init__()
        self.net = EvaluatorCNN(shape, factors)
        self.register_buffer("mean", torch.zeros(factors))
        self.register_buffer("sd", torch.ones(factors))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[1] * self.sd + self.mean


def train_regressor(data: DataBundle, *, epochs: int, seed: int = SEED, batch_size: int = 64
                    ) -> tuple[FactorRegressor, torch.Tensor]:
    """Fit on the training split's measures (least squares on standardized factors, Adam with
    a cosine step size); returns (eval-mode regressor, test R^2 per factor)."""
    x, m = mean_images(data.train.x, data.info.variant), data.train.measures.float()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        reg = FactorRegressor(data.info.shape, m.shape[1]).to(data.device)
    reg.mean.copy_(m.mean(0))
    reg.sd.copy_(m.std(0).clamp_min(1e-6))
    target = (m - reg.mean) / reg.sd
    steps = max(x.shape[0] // batch_size, 1)
    opt = torch.optim.Adam(reg.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / (epochs * steps), 1.0))))
    gen = torch.Generator(device=data.device).manual_seed(seed)
    reg.train()
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=gen, device=data.device)
        for step in range(steps):
            index = order[step * batch_size:(step + 1) * batch_size]
            loss = F.mse_loss(reg.net(x[index])[1], target[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    reg.eval()
    return reg, r_squared(reg, data)


@torch.no_grad()
def r_squared(reg: FactorRegressor, data: DataBundle, chunk: int = 500) -> torch.Tensor:
    """1 - residual variance / variance of each factor on the test split."""
    x, m = mean_images(data.test.x, data.info.variant), data.test.measures.float()
    pred = torch.cat([reg(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)])
    return 1 - (pred - m).pow(2).mean(0) / m.var(0, unbiased=False).clamp_min(1e-12)


def _key(data: DataBundle, epochs: int) -> str:
    code = inspect.getsource(FactorRegressor) + inspect.getsource(train_regressor)
    parts = f"{data.info.name}:{data.info.variant}:{data_digest(data)}:{epochs}:{code}"
    return hashlib.sha1(parts.encode()).hexdigest()[:20]


def load_or_train_regressor(data: DataBundle, *, epochs: int, cache_dir: Path
                            ) -> tuple[FactorRegressor, torch.Tensor]:
    """The cached regressor for ``data`` (trained and cached on first use) and its test R^2."""
    from genbench import store

    if data.train.measures is None:
        raise GenbenchError(f"dataset {data.info.name!r} has no set factors to regress")
    path = Path(cache_dir) / "factors" / f"{data.info.name}-{_key(data, epochs)}.pt"
    reg = FactorRegressor(data.info.shape, data.train.measures.shape[1]).to(data.device)
    if path.exists():
        try:
            saved = torch.load(path, weights_only=True, map_location=data.device)
            reg.load_state_dict(saved["state"])
            return reg.eval(), saved["r2"]
        except Exception:  # an unreadable cache entry is trained again (it is only a cache)
            pass
    reg, r2 = train_regressor(data, epochs=epochs)
    store.save_torch(path, {"state": reg.state_dict(), "r2": r2.cpu()})
    return reg, r2
