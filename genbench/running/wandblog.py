"""``genbench run --log wandb``: the same record as ``--log tensorboard``, to Weights & Biases.

One wandb run per genbench run, named as TensorBoard names it (``vae/seed-0``, with the
``--set`` settings), grouped by dataset, variant and preset, with the model config, preset,
dataset and seed as its config: ``loss/step/*`` against ``trainer/step``, ``loss/epoch/*``,
``epoch/seconds``, ``epoch/images_per_s`` and the ``samples`` grid against ``epoch``,
evaluation progress (``eval/<metric>/done``, ``eval/<metric>/seconds``) while it runs, and the
final metrics in the run's summary. Its files go under ``<run_dir>/wandb/``; the run id is
genbench's run id, so a resumed genbench run resumes its wandb run. wandb's own settings
apply: ``WANDB_MODE=offline`` writes locally for a later ``wandb sync``, ``WANDB_PROJECT``
names the project (default ``genbench``).

Like the TensorBoard logger it only reads what the runner computed, so it changes no number.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from genbench.metrics.context import EvalProgress
from genbench.running.loggers import Tee, _scalar, hparams_of, run_name


class WandbLogger:
    """One run's wandb run; the runner calls :meth:`steps`, :meth:`epoch`, :meth:`final`."""

    def __init__(self, run_dir: Path) -> None:
        import wandb

        from genbench import store

        config = store.read_json(Path(run_dir) / store.CONFIG)
        ds, preset = config.get("dataset", {}), config.get("preset", {})
        (Path(run_dir) / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "genbench"), name=run_name(config),
            group=f"{ds.get('name', '?')}/{ds.get('variant', '?')}-{preset.get('name', '?')}",
            config=hparams_of(config), dir=str(run_dir), id=Path(run_dir).name.replace("/", "-"),
            resume="allow", reinit="create_new")
        for prefix, axis in (("loss/step/*", "trainer/step"), ("loss/epoch/*", "epoch"),
                             ("epoch/*", "epoch"), ("samples", "epoch"), ("eval/*", "eval/update")):
            self.run.define_metric(axis)
            self.run.define_metric(prefix, step_metric=axis)
        self._eval_t0: dict[str, float] = {}
        self._updates = 0

    def steps(self, first_step: int, stats: Sequence[Mapping[str, torch.Tensor]]) -> None:
        if not stats:
            return
        names = dict.fromkeys(k for s in stats for k in s)
        host = {n: [float(s[n].detach().float().reshape(())) if n in s else None for s in stats]
                for n in names}
        for i in range(len(stats)):
            row = {f"loss/step/{n}": v[i] for n, v in host.items() if v[i] is not None}
            self.run.log({**row, "trainer/step": first_step + i})

    def epoch(self, row: Mapping[str, Any], grid: Path | None = None) -> None:
        import wandb

        out: dict[str, Any] = {"epoch": int(row["epoch"])}
        for key, value in row.items():
            v = _scalar(value)
            if key != "epoch" and v is not None:
                out[f"epoch/{key}" if key in ("seconds", "images_per_s") else f"loss/epoch/{key}"] = v
        if grid is not None and grid.exists():
            out["samples"] = wandb.Image(str(grid))
        self.run.log(out)

    def final(self, config: Mapping[str, Any], metrics: Mapping[str, Any], step: int) -> None:
        self.run.summary.update({f"metrics/{k}": v for k, value in sorted(metrics.items())
                                 if not k.startswith("_") and (v := _scalar(value)) is not None})

    def eval_start(self, metric: str) -> None:
        self._eval_t0[metric] = time.perf_counter()

    def eval_update(self, metric: str, done: int, total: int) -> None:
        if total > 0:
            self._log_eval(metric, done / total, time.perf_counter() - self._eval_t0.get(
                metric, time.perf_counter()))

    def eval_end(self, metric: str, seconds: float) -> None:
        self._log_eval(metric, 1.0, seconds)

    def _log_eval(self, metric: str, done: float, seconds: float) -> None:
        self._updates += 1
        self.run.log({f"eval/{metric}/done": done, f"eval/{metric}/seconds": seconds,
                      "eval/update": self._updates})

    def watch(self, display: EvalProgress | None) -> EvalProgress:
        return Tee(self, display)

    def close(self) -> None:
        self.run.finish()
