"""Run folders for report and gallery tests: a smoke-sized model trained a few batches and
saved as ``genbench run`` would (config.json + checkpoint.pt), in milliseconds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from genbench.contract import optimizer_dict, step_model
from genbench.data import DataRequest, load_dataset
from genbench.presets import PRESETS
from genbench.store import save_torch


def make_run(folder: Path, model: str = "vae", dataset: str = "synthetic", latent_dim: int | None = 4,
             steps: int = 30, seed: int = 0) -> Path:
    """A smoke-sized model trained ``steps`` batches, saved as a run folder (config + checkpoint)."""
    from genbench.plugins import load_plugins
    from genbench.registry import get_model
    from genbench.settings import resolve

    load_plugins()
    torch.manual_seed(seed)
    data = load_dataset(DataRequest(dataset))
    cls = get_model(model).cls
    config, preset = resolve(cls.Config, cls.presets, PRESETS["smoke"], {})
    if latent_dim is not None:
        config = dataclasses.replace(config, latent_dim=latent_dim)
    net = cls(config, data.info)
    opts = optimizer_dict(net.configure_optimizers())
    for step, batch in enumerate(data.train_batches(64, seed=seed, epoch=0)):
        if step >= steps:
            break
        step_model(net, batch, opts)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({
        "model": model, "model_config": dataclasses.asdict(config), "seed": seed, "device": "cpu",
        "preset": dataclasses.asdict(preset),
        "dataset": {"name": dataset, "variant": data.info.variant, "shape": list(data.info.shape),
                    "data_dir": None}}))
    save_torch(folder / "checkpoint.pt", {"model": net.state_dict()})
    return folder


def make_vae_run(folder: Path, latent_dim: int = 4, steps: int = 30, seed: int = 0) -> Path:
    return make_run(folder, "vae", latent_dim=latent_dim, steps=steps, seed=seed)


def smoke_run_metrics(model: str, results: Path, metrics: str) -> dict:
    """`genbench run MODEL --dataset synthetic --preset smoke --metrics ...` through the CLI;
    asserts it finished and returns its metrics.json."""
    from typer.testing import CliRunner

    from genbench.cli import app

    out = CliRunner().invoke(app, ["run", model, "--dataset", "synthetic", "--preset", "smoke",
                                   "--device", "cpu", "--results", str(results),
                                   "--metrics", metrics], env={"COLUMNS": "200"})
    assert out.exit_code == 0, out.output
    values = json.loads(next(results.glob(f"synthetic/{model}/*/metrics.json")).read_text())
    assert values["status"] == "finished", values
    return values


def bundled_models() -> list[str]:
    """The names of the models in genbench's own ``models/`` folder (not the plugins that test
    modules register while pytest collects, which would make a parametrization depend on order)."""
    import inspect

    from genbench.plugins import bundled_folder, load_plugins
    from genbench.registry import MODELS

    load_plugins()
    folder = bundled_folder().resolve()
    return sorted(n for n, e in MODELS.items() if Path(inspect.getfile(e.cls)).resolve().parent == folder)
