"""Evaluate a model (after training) or a finished run folder (``genbench eval``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genbench import store
from genbench.data import DataBundle, DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.metrics import EvalContext, evaluate_metrics
from genbench.presets import Preset, get_preset
from genbench.registry import get_model
from genbench.settings import config_from_dict


def default_cache_dir() -> Path:
    return Path(os.environ.get("GENBENCH_CACHE", Path.home() / ".cache" / "genbench"))


def evaluate_model(
    model: torch.nn.Module,
    data: DataBundle,
    preset: Preset,
    *,
    seed: int,
    device: torch.device,
    names: Iterable[str] = (),
    run_dir: Path | None = None,
    results_root: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Every requested (or default) metric that applies; (values, not_applicable)."""
    model.eval()
    names = tuple(names) or preset.metrics
    ctx = EvalContext(model=model, data=data, preset=preset, seed=seed, device=device,
                      cache_dir=default_cache_dir(), results_root=results_root, run_dir=run_dir)
    return evaluate_metrics(ctx, names, progress)


@dataclass
class LoadedRun:
    model: torch.nn.Module
    data: DataBundle
    config: dict[str, Any]
    preset: Preset
    seed: int


def load_run(run_dir: Path, device: torch.device | str = "cpu", data_dir: str | None = None
             ) -> LoadedRun:
    """Rebuild a run's model from its checkpoint and its data from config.json."""
    run_dir = Path(run_dir)
    config = store.read_json(run_dir / store.CONFIG)
    if not config:
        raise GenbenchError(f"{run_dir} is not a run folder (no config.json); pass "
                            "results/<dataset>/<model>/<run-id>")
    ckpt = run_dir / store.CHECKPOINT
    if not ckpt.exists():
        raise GenbenchError(f"{run_dir} has no checkpoint.pt; run training first")
    from genbench.plugins import load_plugins

    load_plugins()
    entry = get_model(config["model"])
    preset = Preset(**{**config["preset"], "metrics": tuple(config["preset"].get("metrics", ()))})
    ds = config["dataset"]
    device = torch.device(device)
    data = load_dataset(DataRequest(ds["name"], ds["variant"], data_dir or ds.get("data_dir"),
                                    str(device)))
    data = data.subset_train(preset.max_train)
    model = entry.cls(config_from_dict(entry.cls.Config, config["model_config"]), data.info)
    state = torch.load(ckpt, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return LoadedRun(model, data, config, preset, int(config.get("seed", 0)))


def evaluate_run(run_dir: Path, names: Iterable[str] = (), preset: str | None = None,
                 device: str = "cpu", data_dir: str | None = None,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Add metrics to a finished run's metrics.json without retraining."""
    run = load_run(run_dir, device, data_dir)
    eval_preset = run.preset
    if preset is not None and preset != run.preset.name:
        p = get_preset(preset)  # evaluation settings from another preset; training stays
        eval_preset = p.with_overrides(epochs=run.preset.epochs, batch_size=run.preset.batch_size,
                                       max_train=run.preset.max_train)
    values, na = evaluate_model(run.model, run.data, eval_preset, seed=run.seed,
                                device=torch.device(device), names=names, run_dir=Path(run_dir),
                                results_root=Path(run_dir).parents[2], progress=progress)
    extra = {"eval_preset": eval_preset.name} if eval_preset.name != run.preset.name else {}
    return store.update_metrics(Path(run_dir), {**values, **extra, "not_applicable": na})
