"""``genbench run``: one :class:`RunRequest`, checked when it is built (names, numbers,
settings, before any data is loaded or anything written), then every (model, seed) job
planned, then run one after another; one failure does not stop the others. The CLI and the
Python API both build the request, so both refuse the same bad input with the same line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from genbench import store
from genbench.data import DataRequest, load_dataset
from genbench.errors import ContractError, GenbenchError
from genbench.executors import LocalOptions, RunOptions, check_options, run_plans, start
from genbench.running.training import Plan, RunOutcome, RunSpec, plan_run, resolve_device
from genbench.settings import parse_overrides, resolve, split_overrides

SEED_MAX = 2**32 - 1


@dataclass(frozen=True)
class RunRequest:
    """What one ``genbench run`` (or ``genbench.run``) asks for.

    Building it checks the model, preset and metric names, the numbers, and every model's
    ``--set`` values against its declared ranges, so a typo costs nothing. It also resolves
    which ``--set`` keys each model takes (``model_sets``), once for all its seeds.
    """

    models: tuple[str, ...]
    dataset: str = "mnist"
    variant: str | None = None
    preset: str = "quick"
    seeds: tuple[int, ...] = (0,)
    epochs: int | None = None
    device: str = "auto"
    overrides: tuple[str, ...] = ()  # KEY=VALUE, as --set gives them
    results: Path = Path("results")
    metrics: tuple[str, ...] = ()
    data_dir: str | None = None
    force: bool = False
    command: str = ""  # recorded in each run's config.json (default: this process's argv)
    log: tuple[str, ...] = ()
    executor: RunOptions | None = None
    # resolved when built: each model's --set values, and the keys some models lack
    model_sets: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, repr=False)
    ignored_sets: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_request(list(self.models), self.preset, self.metrics, self.epochs, list(self.seeds))
        if self.executor is not None:
            check_options(self.executor)  # before any data is loaded or anything submitted
        sets, ignored = _checked_settings(list(self.models), self.preset, list(self.overrides), self.epochs)
        object.__setattr__(self, "model_sets", sets)
        object.__setattr__(self, "ignored_sets", ignored)

    def specs(self) -> list[RunSpec]:
        """One job per (model, distinct seed), in the order asked."""
        return [RunSpec(model=name, dataset=self.dataset, variant=self.variant, preset=self.preset,
                        seed=seed, epochs=self.epochs, overrides=self.model_sets[name],
                        device=self.device, results=self.results, data_dir=self.data_dir,
                        metrics=self.metrics, force=self.force, command=self.command or _command(),
                        log=self.log)
                for name in self.models for seed in dict.fromkeys(self.seeds)]


def run_all(request: RunRequest, console: Console, *, plan_only: bool = False) -> list[RunOutcome]:
    """Plan every job of ``request`` (loading the data once), then run them, or with
    ``plan_only`` print each one's estimated cost and run nothing."""
    for key, names in request.ignored_sets.items():
        console.print(f"[yellow]note:[/] --set {key} ignored by {', '.join(names)} "
                      "(no such setting)", highlight=False)
    if request.executor is not None and not plan_only:
        start(request.executor)  # Ray: reach it and warm its workers while the data loads
    store.check_results_root(request.results)
    dev = resolve_device(request.device)
    data = load_dataset(DataRequest(request.dataset, request.variant, request.data_dir, str(dev)))
    for note in data.notes:
        console.print(f"[bold yellow]warning:[/] {note}", highlight=False)
    plans: list[Plan] = [plan_run(spec, data) for spec in request.specs()]
    if plan_only:  # `--plan`: the estimated cost of each run, nothing run
        from genbench.running.costs import print_costs

        print_costs(plans, console, threads=request.executor.cpus_per_run if request.executor else None)
        return []
    return run_plans(plans, request.executor or LocalOptions(), console, request.results)


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


def _checked_settings(models: list[str], preset: str, overrides: list[str], epochs: int | None
                      ) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """(each model's ``--set`` values, the keys some models lack and which): a key only some
    models have applies to those, and
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
    return model_sets, ignored


def _command() -> str:
    import sys

    return " ".join(["genbench", *sys.argv[1:]])
