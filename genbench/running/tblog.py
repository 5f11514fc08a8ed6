"""``genbench run --log tensorboard``: a run's training and results as TensorBoard events.

Written under ``<results>/tensorboard/<dataset>/<variant>-<preset>/<model>/seed-<N>/`` (the
model named with its ``--set`` settings, ``vae (latent_dim=2)``), so ``tensorboard --logdir
results/tensorboard`` shows every run side by side, live, under a name a person reads:

- ``loss/step/<name>``: every training step's losses (``loss``, or a GAN's ``g_loss`` and
  ``d_loss``, and whatever else the model's step reports), at the global step;
- ``loss/epoch/<name>``, ``epoch/seconds``, ``epoch/images_per_s``: the history.csv row;
- ``samples``: the fixed-noise sample grid of each epoch (the same PNG as
  ``samples/epoch_XXX.png``);
- ``eval/<metric>/done`` (fraction of the metric's current loop) and ``eval/<metric>/seconds``:
  evaluation as it runs;
- ``metrics/<name>``: the final metrics, with the hparams view (model config, preset,
  dataset and seed against the metrics). Each run writes its session; the experiment, whose
  metric columns TensorBoard shows, is written for the whole folder (``_experiment/``) and
  declares the union of the headline metrics every run in it has, so a GAN beside VAEs
  does not hide their likelihood columns.

Logging only reads what the runner already computed (per-step values are gathered in
one device-to-host copy per progress update), so it never changes a training number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genbench.errors import GenbenchError
from genbench.metrics.context import EvalProgress
from genbench.registry import headline_keys
from genbench.running.loggers import Tee, _safe, _scalar, hparams_of, run_name  # noqa: F401

FOLDER = "tensorboard"


def headline() -> tuple[str, ...]:
    """The HParams table's metric columns: the headline keys as their metrics declare them
    (``ResultKey.headline``)."""
    return tuple(k.name for k in headline_keys())


def event_dir(run_dir: Path, config: Mapping[str, Any]) -> Path:
    """Where a run's events go: ``<results>/tensorboard/<dataset>/<variant>-<preset>/<name>``
    (``run_dir`` is ``<results>/<dataset>/<model>/<run-id>``)."""
    ds, preset = config.get("dataset", {}), config.get("preset", {})
    group = f"{ds.get('variant', '?')}-{preset.get('name', '?')}"
    return (Path(run_dir).parents[2] / FOLDER / _safe(str(ds.get("name", "?"))) / _safe(group)
            / run_name(config))


class TensorBoardLogger:
    """One run's SummaryWriter; the runner calls :meth:`steps`, :meth:`epoch`, :meth:`final`."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        from genbench import store

        self.run_dir = Path(run_dir)
        self.dir = event_dir(self.run_dir, store.read_json(self.run_dir / store.CONFIG))
        self.writer = SummaryWriter(log_dir=str(self.dir), flush_secs=10)  # live within seconds
        self._eval_t0: dict[str, float] = {}
        self._eval_step: dict[str, int] = {}

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
        heads = headline()
        headline_numbers = {k: v for k, v in numbers.items() if k.removeprefix("metrics/") in heads}
        _, ssi, sei = hparams(hparams_of(config), headline_numbers or numbers)
        for summary in (ssi, sei):  # the session; the folder's experiment declares the columns
            self.writer.file_writer.add_summary(summary, step)
        for tag, v in numbers.items():
            self.writer.add_scalar(tag, v, step)
        self.writer.flush()
        write_experiment(self.run_dir.parents[2], fresh={self.run_dir: metrics})

    # evaluation as it runs (an EvalProgress the runner tees beside its display)
    def eval_start(self, metric: str) -> None:
        import time

        self._eval_t0[metric] = time.perf_counter()
        self._eval_step.setdefault(metric, 0)

    def eval_update(self, metric: str, done: int, total: int) -> None:
        import time

        if total <= 0:
            return
        step = self._eval_step.get(metric, 0)
        self._eval_step[metric] = step + 1
        self.writer.add_scalar(f"eval/{metric}/done", done / total, step)
        self.writer.add_scalar(f"eval/{metric}/seconds",
                               time.perf_counter() - self._eval_t0.get(metric, time.perf_counter()), step)

    def eval_end(self, metric: str, seconds: float) -> None:
        step = self._eval_step.get(metric, 0)
        self.writer.add_scalar(f"eval/{metric}/done", 1.0, step)
        self.writer.add_scalar(f"eval/{metric}/seconds", seconds, step)
        self.writer.flush()

    def watch(self, display: EvalProgress | None) -> EvalProgress:
        """An EvalProgress that tells ``display`` and writes the progress as scalars."""
        return Tee(self, display)

    def close(self) -> None:
        self.writer.close()


EXPERIMENT = "_experiment"  # the folder-level run that declares the HParams columns


def write_experiment(results: Path, fresh: Mapping[Path, Mapping[str, Any]] | None = None
                     ) -> Path | None:
    """Declare the HParams experiment of every run under ``results``: the union of their
    hparams and of the headline metrics any of them has, written to
    ``<results>/tensorboard/_experiment/`` (replacing the previous declaration). ``fresh``:
    a run's metrics not yet in its metrics.json (the runner logs before it writes)."""
    from tensorboard.plugins.hparams import summary_v2 as hp  # (its `api` imports keras)
    from torch.utils.tensorboard import SummaryWriter

    from genbench import store

    values: dict[str, set] = {}
    metrics: set[str] = set()
    for folder in store.iter_runs(results):
        try:
            config, got = store.read_json(folder / store.CONFIG), store.read_json(folder / store.METRICS)
        except GenbenchError:
            continue
        got = {**got, **(fresh or {}).get(folder, {})}
        if not (event_dir(folder, config)).exists():
            continue  # a run without --log tensorboard has no session to show
        for k, v in hparams_of(config).items():
            values.setdefault(k, set()).add(v)
        metrics |= {k for k in headline() if _scalar(got.get(k)) is not None}
    if not metrics:
        return None
    params = [hp.HParam(k, hp.Discrete(sorted(v, key=str)) if all(isinstance(x, str) for x in v)
                        else None) for k, v in sorted(values.items())]
    pb = hp.hparams_config_pb(hparams=params,
                                      metrics=[hp.Metric(f"metrics/{k}") for k in headline() if k in metrics])
    folder = Path(results) / FOLDER / EXPERIMENT
    for old in folder.glob("events.out.tfevents.*") if folder.exists() else ():
        old.unlink(missing_ok=True)  # one declaration: TensorBoard reads the first it finds
    writer = SummaryWriter(log_dir=str(folder))
    writer.file_writer.add_summary(pb)
    writer.close()
    return folder
