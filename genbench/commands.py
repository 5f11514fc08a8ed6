"""CLI commands kept out of cli.py (the cli layer: parse, call one library function, print)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console


def features_command(
    dataset: Annotated[str, typer.Argument(help="dataset name (see `genbench list datasets`)")],
    preset: Annotated[str, typer.Option(help="smoke | quick | paper: sets the epochs")] = "quick",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    data_dir: Annotated[str | None, typer.Option(help="folder with the dataset's files")] = None,
    seed: Annotated[int | None, typer.Option(help="training seed (default: the one every run "
                                                  "uses)")] = None,
) -> None:
    """Build (or load) the evaluator classifier for DATASET and print its test accuracy."""
    # torch loads here, not on import: `genbench --help` stays fast
    from genbench.data import DataRequest, load_dataset
    from genbench.metrics.features import FEATURE_SEED, default_cache_dir, load_or_train_extractor
    from genbench.presets import get_preset
    from genbench.training import resolve_device

    console = Console()
    p = get_preset(preset)
    data = load_dataset(DataRequest(dataset, data_dir=data_dir, device=str(resolve_device(device))))
    for note in data.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False)
    ext = load_or_train_extractor(data, epochs=p.feature_epochs, cache_dir=default_cache_dir(),
                                  seed=FEATURE_SEED if seed is None else seed,
                                  progress=lambda m: console.print(m, highlight=False))
    status = "trained" if ext.trained else "loaded from cache"
    console.print(f"evaluator for {data.info.name} ({data.info.variant}): [bold]{ext.feature_space}"
                  f"[/] ({ext.task}), test accuracy [bold]{100 * (ext.accuracy or 0):.2f}%[/]",
                  highlight=False)
    console.print(f"{status}: {ext.path}", highlight=False, soft_wrap=True)
