"""``genbench run --log tensorboard``: a run's training and results as TensorBoard events.

Written under ``<run_dir>/tensorboard/`` so ``tensorboard --logdir results`` shows every
run side by side, live:

- ``loss/step/<name>``: every training step's losses (``loss``, or a GAN's ``g_loss`` and
  ``d_loss``, and whatever else the model's step reports), at the global step;
- ``loss/epoch/<name>``, ``epoch/seconds``, ``epoch/images_per_s``: the history.csv row;
- ``samples``: the fixed-noise sample grid of each epoch (the same PNG as
  ``samples/epoch_XXX.png``);
- ``metrics/<name>``: the final metrics, with the hparams view (model config, preset,
  dataset and seed against the metrics).

Logging only reads what the runner already computed (per-step values are gathered in
one device-to-host copy per progress update), so it never changes a training number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genbench.errors import GenbenchError
from genbench.registry import headline_keys

LOGGERS = ("tensorboard",)
FOLDER = "tensorboard"
INSTALL = 'pip install "genbench[tensorboard]"'


def check(names: Sequence[str]) -> None:
    """Fail early (before any training) on an unknown logger or a missing package."""
    for name in names:
        if name not in LOGGERS:
            raise GenbenchError(f"unknown --log {name!r}; use {', '.join(LOGGERS)}")
    if "tensorboard" in names:
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise GenbenchError(f"--log tensorboard needs the tensorboard package: {INSTALL}") from None


def _scalar(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


def hparams_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config.json as the flat hparams TensorBoard takes (str, bool, int, float)."""
    out: dict[str, Any] = {"model": config.get("model", "?"), "seed": config.get("seed", 0)}
    ds, preset = config.get("dataset", {}), config.get("preset", {})
    out["dataset"] = str(ds.get("name", "?"))
    out["variant"] = str(ds.get("variant", "?"))
    out["preset"] = str(preset.get("name", "?"))
    for key in ("epochs", "batch_size"):
        if key in preset:
            out[key] = preset[key]
    for key, value in config.get("model_config", {}).items():
        out[f"config.{key}"] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


class TensorBoardLogger:
    """One run's SummaryWriter; the runner calls :meth:`steps`, :meth:`epoch`, :meth:`final`."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(run_dir) / FOLDER
        self.writer = SummaryWriter(log_dir=str(self.dir), flush_secs=10)  # live within seconds

    def steps(self, first_step: int, stats: Sequence[Mapping[str, torch.Tensor]]) -> None:
        """Losses of consecutive steps ``first_step, first_step + 1, ...`` (device tensors;
        one copy to the host per name)."""
        if not stats:
            return
        names = dict.fromkeys(k for s in stats for k in s)
        for name in names:
            idx = [i for i, s in enumerate(stats) if name in s]
            values = torch.stack([stats[i][name].detach().float().reshape(()) for i in idx]).tolist()
            for i, v in zip(idx, values, strict=True):
                self.writer.add_scalar(f"loss/step/{name}", v, first_step + i)

    def epoch(self, row: Mapping[str, Any], grid: Path | None = None) -> None:
        """The epoch's history row (epoch, seconds, images_per_s, mean losses) and grid."""
        epoch = int(row["epoch"])
        for key, value in row.items():
            v = _scalar(value)
            if key == "epoch" or v is None:
                continue
            tag = f"epoch/{key}" if key in ("seconds", "images_per_s") else f"loss/epoch/{key}"
            self.writer.add_scalar(tag, v, epoch)
        if grid is not None and grid.exists():
            import numpy as np
            from PIL import Image

            image = np.asarray(Image.open(grid).convert("RGB"))
            self.writer.add_image("samples", image, epoch, dataformats="HWC")
        self.writer.flush()

    def final(self, config: Mapping[str, Any], metrics: Mapping[str, Any], step: int) -> None:
        """The final metrics as scalars and the hparams view (config against metrics)."""
        from torch.utils.tensorboard.summary import hparams

        numbers = {f"metrics/{k}": v for k, value in sorted(metrics.items())
                   if not k.startswith("_") and (v := _scalar(value)) is not None}
        # the HParams table's columns: the headline metrics (all are scalars under metrics/)
        heads = {k.name for k in headline_keys()}  # as the metrics declare them (ResultKey.headline)
        headline = {k: v for k, v in numbers.items() if k.removeprefix("metrics/") in heads}
        exp, ssi, sei = hparams(hparams_of(config), headline or numbers)
        for summary in (exp, ssi, sei):
            self.writer.file_writer.add_summary(summary, step)
        for tag, v in numbers.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_loggers(names: Sequence[str], run_dir: Path) -> TensorBoardLogger | None:
    """The run's logger (TensorBoard is the one there is), or None when none is asked for."""
    if not names:
        return None
    check(names)
    return TensorBoardLogger(run_dir)
