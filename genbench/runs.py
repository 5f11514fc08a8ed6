"""``genbench run``: plan every (model, seed) job first, so bad input fails before any
training, then run them one after another; one failure does not stop the others."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from genbench import store
from genbench.data import DataRequest, load_dataset
from genbench.errors import ContractError, GenbenchError
from genbench.executors import LocalOptions, RunOptions, check_options, run_plans, start
from genbench.settings import parse_overrides, resolve, split_overrides
from genbench.training import Plan, RunOutcome, RunSpec, plan_run, resolve_device

SEED_MAX = 2**32 - 1


def run_all(*, models: list[str], dataset: str, variant: str | None, preset: str,
            epochs: int | None, seeds: list[int], device: str, overrides: list[str],
            results: Path, metrics: tuple[str, ...], data_dir: str | None, force: bool,
            console: Console, command: str = "", executor: RunOptions | None = None,
            plan_only: bool = False, log: tuple[str, ...] = ()) -> list[RunOutcome]:
    _check_request(models, preset, metrics, epochs, seeds)
    if executor is not None:
        check_options(executor)  # before any data is loaded or anything submitted
        if not plan_only:
            start(executor)  # Ray: reach it and warm its workers while the data loads
    model_sets = _checked_settings(models, preset, overrides, epochs, console)
    store.check_results_root(results)
    dev = resolve_device(device)
    data = load_dataset(DataRequest(dataset, variant, data_dir, str(dev)))
    for note in data.notes:
        console.print(f"[bold yellow]warning:[/] {note}", highlight=False)
    plans: list[Plan] = []
    for name in models:
        for seed in dict.fromkeys(seeds):
            spec = RunSpec(model=name, dataset=dataset, variant=variant, preset=preset,
                           seed=seed, epochs=epochs, overrides=model_sets[name], device=device,
                           results=results, data_dir=data_dir, metrics=metrics, force=force,
                           command=command or _command(), log=tuple(log))
            plans.append(plan_run(spec, data))
    if plan_only:  # `--plan`: the estimated cost of each run, nothing run
        from genbench.plan import print_costs

        print_costs(plans, console, threads=executor.cpus_per_run if executor else None)
        return []
    return run_plans(plans, executor or LocalOptions(), console, results)


def _check_request(models: list[str], preset: str, metrics: tuple[str, ...], epochs: int | None,
                   seeds: list[int]) -> None:
    """Names and numbers first, before the executor is reached or data loaded: a typo
    costs nothing."""
    from genbench.contract import old_contract
    from genbench.presets import get_preset
    from genbench.registry import get_metric, get_model

    for name in models:
        if (why := old_contract(get_model(name).cls)) is not None:
            raise ContractError(why)
    get_preset(preset)
    for m in metrics:
        get_metric(m)
    if epochs is not None and epochs < 1:
        raise GenbenchError("--epochs must be at least 1")
    for seed in seeds:  # torch, numpy and the seed offsets of the samplers all take these
        if not 0 <= seed <= SEED_MAX:
            raise GenbenchError(f"--seed {seed}: use a whole number from 0 to {SEED_MAX}")


def _checked_settings(models: list[str], preset: str, overrides: list[str], epochs: int | None,
                      console: Console) -> dict[str, dict[str, str]]:
    """Each model's ``--set`` values: a key only some models have applies to those, and
    every value is range-checked now (and Inception's weights found), before data is loaded
    or anything is written."""
    from genbench.presets import get_preset
    from genbench.registry import get_model

    model_sets, ignored = split_overrides({n: get_model(n).cls.Config for n in models},
                                          parse_overrides(overrides))
    for name in models:
        entry = get_model(name)
        _, resolved = resolve(entry.cls.Config, getattr(entry.cls, "presets", {}),
                              get_preset(preset), model_sets[name], epochs)
        if resolved.feature_extractor == "inception":  # its weights, before any training
            from genbench.metrics.features import check_inception_weights

            check_inception_weights(resolved.inception_weights)
    for key, names in ignored.items():
        console.print(f"[yellow]note:[/] --set {key} ignored by {', '.join(names)} "
                      "(no such setting)", highlight=False)
    return model_sets


def _command() -> str:
    import sys

    return " ".join(["genbench", *sys.argv[1:]])
