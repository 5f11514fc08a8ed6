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
    from genbench.running.training import resolve_device

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


def score_command(
    samples: Annotated[str, typer.Argument(help=".npz/.npy array, .pt tensor, or a folder of "
                                                "PNG/JPEG images")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="the data they imitate")],
    name: Annotated[str, typer.Option("--name", help="the label of the outside model in the report")],
    variant: Annotated[str | None, typer.Option(help="dynamic | static | continuous")] = None,
    preset: Annotated[str, typer.Option("--preset", "-p",
                                        help="counts and settings, as the runs to compare")] = "quick",
    set_: Annotated[list[str], typer.Option("--set", help="KEY=VALUE: a preset setting")] = [],  # noqa: B006
    seed: Annotated[int, typer.Option(help="seed of KID's subsets and FID's bootstrap")] = 0,
    resize: Annotated[str | None, typer.Option(
        help="nearest | bilinear | bicubic | area: resize to the dataset's size (recorded)")] = None,
    results: Annotated[str, typer.Option(help="results folder")] = "results",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    data_dir: Annotated[str | None, typer.Option(help="folder with the dataset's files")] = None,
    reference_stats: Annotated[str | None, typer.Option(
        help="a `genbench stats` file, or pytorch-fid's mu/sigma .npz (FID only)")] = None,
) -> None:
    """Score samples from a model genbench did not train (FID, KID, precision/recall, mode
    coverage, memorization), stored as an external run beside the trained models."""
    from genbench.interfaces.api import score
    from genbench.running.display import EvalDisplay

    console = Console()
    watch = EvalDisplay(console)
    try:
        outcome = score(samples, dataset=dataset, name=name, variant=variant, preset=preset,
                        overrides=set_, seed=seed, resize=resize, results=results, device=device,
                        data_dir=data_dir, reference_stats=reference_stats, progress=watch)
    finally:
        watch.stop()
    keys = ("fid", "kid", "precision", "recall", "density", "coverage", "inception_score",
            "classes_covered", "copied_excess")
    for key in keys:
        value = outcome.metrics.get(key)
        if isinstance(value, (int, float)):
            floor = outcome.metrics.get(f"floor_{key}")
            beside = f"   (real vs real: {floor:.4g})" if isinstance(floor, (int, float)) else ""
            console.print(f"{key:16s} {value:.4g}{beside}", highlight=False)
    if "kid" not in outcome.metrics:  # pytorch-fid statistics: FID only
        console.print(f"FID only: {reference_stats} holds only mu and sigma", highlight=False)
    console.print(f"feature space {outcome.metrics.get('feature_space')}; stored in {outcome.run_dir}",
                  highlight=False, soft_wrap=True)


def stats_command(
    dataset: Annotated[str, typer.Argument(help="dataset name (see `genbench list datasets`)")],
    features: Annotated[str | None, typer.Option(
        help="feature extractor (default: the preset's, the dataset's classifier)")] = None,
    preset: Annotated[str, typer.Option("--preset", "-p", help="the counts the runs use")] = "quick",
    variant: Annotated[str | None, typer.Option(help="dynamic | static | continuous")] = None,
    out: Annotated[str | None, typer.Option(help="also write the test reference here (to share)")] = None,
    set_: Annotated[list[str], typer.Option("--set", help="KEY=VALUE: a preset setting")] = [],  # noqa: B006
    device: Annotated[str, typer.Option(help="auto | cpu | cuda")] = "auto",
    data_dir: Annotated[str | None, typer.Option(help="folder with the dataset's files")] = None,
) -> None:
    """Compute and cache the real data's reference statistics (mean, covariance and the
    features KID and precision/recall need) that runs and `genbench score` then read."""
    from genbench.running.scoring import make_stats
    from genbench.running.training import resolve_device
    from genbench.settings import parse_overrides

    console = Console()
    made = make_stats(dataset, features=features, preset=preset, variant=variant, out=out,
                      device=str(resolve_device(device)), data_dir=data_dir,
                      overrides=parse_overrides(set_))
    for ref, path in made:
        k = ref.key
        console.print(f"{k['split']:5s} {k['n']:6d} images  {k['feature_space']}  {path}",
                      highlight=False, soft_wrap=True)
