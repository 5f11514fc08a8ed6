"""The loggers of ``genbench run --log NAME``: which there are, the check before training,
and what they share (a run's name and hparams, the evaluation tee).

Each logger lives in its own module (:mod:`genbench.running.tblog`, :mod:`genbench.running.wandblog`) and is
named here by "module:class", loaded only when asked for, so that neither package is
imported by a run that does not log.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.metrics.context import EvalProgress

# name -> (the logger class as "module:class", the packages it needs, the pip extra)
LOGGERS = {"tensorboard": ("genbench.running.tblog:TensorBoardLogger",
                           ("tensorboard", "torch.utils.tensorboard"), "tensorboard"),
           "wandb": ("genbench.running.wandblog:WandbLogger", ("wandb",), "wandb")}


def check(names: Sequence[str]) -> None:
    """Fail early (before any training) on an unknown logger or a missing package."""
    for name in names:
        if name not in LOGGERS:
            raise GenbenchError(f"unknown --log {name!r}; use {', '.join(LOGGERS)}")
    for name in dict.fromkeys(names):
        _, packages, extra = LOGGERS[name]
        for package in packages:
            try:
                importlib.import_module(package)
            except ImportError:
                raise GenbenchError(f"--log {name} needs the {packages[0]} package: "
                                    f'pip install "genbench[{extra}]"') from None


def _logger_class(name: str) -> type:
    module, cls = LOGGERS[name][0].split(":")
    return getattr(importlib.import_module(module), cls)


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


def run_name(config: Mapping[str, Any]) -> str:
    """``vae/seed-0``, or ``vae (latent_dim=2, lr=0.01)/seed-0`` with the run's ``--set``
    settings: the name TensorBoard shows for a run."""
    sets = config.get("overrides") or {}
    label = str(config.get("model", "?"))
    if sets:
        label += " (" + ", ".join(f"{k}={v}" for k, v in sorted(sets.items())) + ")"
    return f"{_safe(label)}/seed-{config.get('seed', 0)}"


def _safe(part: str) -> str:
    return "".join("-" if c in '/\\:*?"<>|' else c for c in part)


def open_loggers(names: Sequence[str], run_dir: Path) -> Any:
    """The run's logger (TensorBoard, wandb, or both through one object), or None when none
    is asked for."""
    if not names:
        return None
    check(names)
    loggers = [_logger_class(name)(run_dir) for name in LOGGERS if name in names]
    return loggers[0] if len(loggers) == 1 else Loggers(loggers)


class Loggers:
    """Several loggers as one: each call goes to every one of them."""

    def __init__(self, loggers: Sequence[Any]) -> None:
        self.loggers = list(loggers)

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            for logger in self.loggers:
                getattr(logger, name)(*args, **kwargs)
        return call

    def watch(self, display: EvalProgress | None) -> EvalProgress:
        return Tee(self, display)


class Tee(EvalProgress):
    """Evaluation progress to the terminal display and to the logger(s) alike."""

    def __init__(self, logger: Any, display: EvalProgress | None) -> None:
        self.logger, self.display = logger, display

    def start(self, metric: str) -> None:
        self.logger.eval_start(metric)
        if self.display is not None:
            self.display.start(metric)

    def update(self, metric: str, done: int, total: int, unit: str) -> None:
        self.logger.eval_update(metric, done, total)
        if self.display is not None:
            self.display.update(metric, done, total, unit)

    def end(self, metric: str, seconds: float, failed: str | None = None) -> None:
        self.logger.eval_end(metric, seconds)
        if self.display is not None:
            self.display.end(metric, seconds, failed)

    def stop(self) -> None:
        stop = getattr(self.display, "stop", None)
        if callable(stop):
            stop()


