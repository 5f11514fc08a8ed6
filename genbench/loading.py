"""Rebuild a finished run from its folder: the model from ``checkpoint.pt``, the data from
``config.json``.

Kept apart from :mod:`genbench.running.evaluation` so the galleries (below evaluation in the layer
order) and evaluation share one loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genbench import store
from genbench.data import DataBundle, DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.presets import Preset
from genbench.registry import get_model
from genbench.settings import config_from_dict


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
    config = store.read_config(run_dir)
    if not config:
        raise GenbenchError(f"{run_dir} is not a run folder (no config.json); pass "
                            "results/<dataset>/<model>/<run-id>")
    refuse_outside(run_dir, config, "load", f"its numbers are in {run_dir / store.METRICS} "
                   "(genbench.load_results)")
    ckpt = run_dir / store.CHECKPOINT
    if not ckpt.exists():
        raise GenbenchError(f"{run_dir} has no checkpoint.pt; run training first")
    from genbench.plugins import reload_for_run

    reload_for_run(config, run_dir)  # a plugin model: its recorded folder, or one line
    entry = get_model(config["model"])
    preset = stored_preset(config, run_dir / store.CONFIG)
    ds = config["dataset"]
    device = torch.device(device)
    data = load_dataset(DataRequest(ds["name"], ds.get("variant"), data_dir or ds.get("data_dir"),
                                    str(device)))
    data = data.subset_train(preset.max_train)
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten: leave the RNG be
        model = entry.cls(config_from_dict(entry.cls.Config, config["model_config"]), data.info)
    state = store.load_torch(ckpt, map_location=device, keys=("model",))
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as err:
        raise GenbenchError(f"{ckpt} does not fit the {config['model']} model of its config.json "
                            f"({str(err).strip().splitlines()[0][:160]}); rerun the run with --force"
                            ) from None
    model.to(device).eval()
    return LoadedRun(model, data, config, preset, int(config.get("seed", 0)))


def refuse_outside(run_dir: Path, config: dict[str, Any], verb: str, instead: str) -> None:
    """One line for a command that needs a model, pointed at a run folder of outside samples
    (``genbench score``'s, ``"external": true``): there is no model, so say what can be done
    instead rather than ask for a checkpoint that will never exist."""
    if config.get("external"):
        raise GenbenchError(f"{run_dir} holds outside samples scored by `genbench score`: it has "
                            f"no model to {verb}; {instead}")


def refuse_outside_folder(path: str | Path, verb: str, instead: str) -> None:
    """:func:`refuse_outside` for a path a user gave, which may be no run folder at all
    (then there is nothing to refuse here; the command's own checks speak)."""
    path = Path(path)
    if (path / store.CONFIG).is_file():
        refuse_outside(path, store.read_config(path), verb, instead)


def refuse_beside_outside(model_dir: Path, model: str) -> None:
    """`genbench run MODEL` where ``genbench score`` filed outside samples under the name
    MODEL (a plugin named after them later): one line, before anything is trained or written,
    rather than runs of two kinds in one model folder."""
    for path in sorted(Path(model_dir).glob(f"*/{store.CONFIG}")):
        if store.read_json(path).get("external"):
            raise GenbenchError(f"{model_dir} holds outside samples scored by `genbench score` under "
                                f"the name {model!r} ({path.parent.name}); train {model} into "
                                "another --results folder, or move those samples' folder away")


def rescore_hint(config: dict[str, Any]) -> str:
    """How to score an outside run's samples again: its recorded command."""
    command = config.get("command") or "genbench score SAMPLES --dataset NAME --name LABEL"
    return f"rescore them with `{command}` (add --preset or --set for other counts)"


def stored_preset(config: dict[str, Any], path: Path) -> Preset:
    """The preset config.json records, every setting a known one (else one line)."""
    import dataclasses

    fields = {f.name for f in dataclasses.fields(Preset)}
    stored = config["preset"]
    if unknown := sorted(set(stored) - fields):
        raise GenbenchError(f"{path}: its preset has setting(s) {', '.join(map(repr, unknown))} "
                            "this genbench does not know (written by another version?); rerun "
                            "the run with --force")
    try:
        return Preset(**{**stored, "metrics": tuple(stored.get("metrics", ()))})
    except (TypeError, ValueError, GenbenchError) as err:
        raise GenbenchError(f"{path}: its preset is invalid ({err}); rerun the run with --force"
                            ) from None
