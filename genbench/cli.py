"""The command line: thin typed commands that parse, call one library function, print."""

from __future__ import annotations

import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from genbench.errors import GenbenchError, GenbenchWarning

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="genbench: train generative models side by side and measure them alike.")
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

# the headline columns of `genbench run`'s table; the report has everything
SUMMARY_KEYS = ("test_elbo", "test_iwae", "test_ais", "recon_bce", "fid", "test_error")


def friendly(fn: F) -> F:
    """GenbenchError -> one red line and exit code 2; Ctrl-C -> a note and exit code 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GenbenchError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted; run the same command again to resume[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """genbench's own warnings as one line (Python's default adds the source line)."""
    if issubclass(category, GenbenchWarning):
        err_console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        _python_showwarning(message, category, *args, **kwargs)


_python_showwarning = warnings.showwarning
warnings.showwarning = _show_warning


def _load(plugins: list[Path] | None = None) -> None:
    from genbench.plugins import load_plugins

    load_plugins(plugins or [])


@app.command("list")
@friendly
def list_cmd(
    what: str = typer.Argument("all", help="models | datasets | metrics | presets | all"),
    plugins: list[Path] = typer.Option([], "--plugins", help="extra plugin folder"),
) -> None:
    """List registered models, datasets, metrics and presets, one line each."""
    from genbench import listing

    _load(plugins)
    for title, rows in listing.sections(what):
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        for name, description in rows:
            table.add_row(f"[bold]{name}[/]", description)
        console.print(table)
        console.print()


@app.command()
@friendly
def run(
    models: list[str] = typer.Argument(..., help="model names (see `genbench list models`)"),
    dataset: str = typer.Option("mnist", "--dataset", "-d", help="dataset name"),
    variant: str | None = typer.Option(None, "--variant", help="dynamic | static | continuous"),
    preset: str = typer.Option("quick", "--preset", "-p", help="smoke | quick | paper"),
    epochs: int | None = typer.Option(None, "--epochs", help="override the preset's epochs"),
    seed: list[int] = typer.Option([0], "--seed", help="repeat for several seeds"),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE: a model config field or preset setting"),
    results: Path = typer.Option(Path("results"), "--results", help="results folder"),
    plugins: list[Path] = typer.Option([], "--plugins", help="extra plugin folder"),
    metrics: str | None = typer.Option(None, "--metrics", help="comma-separated metric names"),
    data_dir: str | None = typer.Option(None, "--data-dir", help="folder with the dataset's files"),
    force: bool = typer.Option(False, "--force", help="rerun finished runs from scratch"),
    executor: str = typer.Option("local", "--executor", help="local | ray | slurm (README: On a cluster)"),
    address: str | None = typer.Option(None, "--address", help="ray: auto | ray://host:port (none: local)"),
    cpus_per_run: int = typer.Option(1, "--cpus-per-run", help="ray/slurm: CPUs (torch threads) per run"),
    gpus_per_run: float | None = typer.Option(None, "--gpus-per-run",
                                              help="ray/slurm: GPUs per run (default 1 if any)"),
    max_retries: int = typer.Option(2, "--max-retries", help="ray: retries of a run whose worker died"),
    eval_shards: int = typer.Option(1, "--eval-shards", help="ray: split IWAE/AIS/BDMC over N tasks"),
    slurm_partition: str | None = typer.Option(None, "--slurm-partition", help="slurm: partition"),
    slurm_time: str = typer.Option("12:00:00", "--slurm-time", help="slurm: time limit per run"),
    slurm_cluster: str | None = typer.Option(None, "--slurm-cluster",
                                             help="slurm, or local (testing)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="slurm: print the job array, submit nothing"),
    plan: bool = typer.Option(False, "--plan", help="print each run's estimated cost; run nothing"),
) -> None:
    """Train MODELs on a dataset, evaluate them, and print a table of their metrics."""
    from genbench.executors import ExecutorOptions
    from genbench.runs import run_all

    _load(plugins)
    opts = ExecutorOptions(executor, address, cpus_per_run, gpus_per_run, max_retries, eval_shards,
                           slurm_partition, slurm_time, slurm_cluster, dry_run=dry_run,
                           plugins=tuple(str(p) for p in plugins))
    outcomes = run_all(models=models, dataset=dataset, variant=variant, preset=preset,
                       epochs=epochs, seeds=seed, device=device, overrides=set_,
                       results=results, metrics=_names(metrics), data_dir=data_dir, force=force,
                       console=console, executor=opts, plan_only=plan)
    if plan or dry_run and not outcomes:
        return
    print_summary(outcomes, results)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


@app.command()
@friendly
def unlock(run_dirs: list[Path] = typer.Argument(..., help="run folders whose .lock is stale")) -> None:
    """Remove a run folder's lock whose process is gone (e.g. on another host of a shared
    filesystem); a holder alive on this host is never removed."""
    from genbench.store import unlock as unlock_folder

    for folder in run_dirs:
        console.print(unlock_folder(folder), highlight=False)


@app.command("eval")
@friendly
def eval_cmd(
    run_dirs: list[Path] = typer.Argument(..., help="run folders results/<dataset>/<model>/<run-id>"),
    metrics: str | None = typer.Option(None, "--metrics", help="comma-separated metric names"),
    preset: str | None = typer.Option(None, "--preset", help="evaluation settings of this preset"),
    device: str = typer.Option("auto", "--device"),
    data_dir: str | None = typer.Option(None, "--data-dir"),
    plugins: list[Path] = typer.Option([], "--plugins"),
    executor: str = typer.Option("local", "--executor", help="local | ray"),
    address: str | None = typer.Option(None, "--address", help="ray: auto or ray://host:port"),
    cpus_per_run: int = typer.Option(1, "--cpus-per-run", help="ray: CPUs (torch threads) per shard"),
    eval_shards: int = typer.Option(1, "--eval-shards", help="ray: split IWAE/AIS/BDMC over N tasks"),
) -> None:
    """Add metrics to finished runs without retraining."""
    from genbench.evaluation import evaluate_run
    from genbench.executors import ExecutorOptions, eval_sharding
    from genbench.training import resolve_device

    _load(plugins)
    dev = str(resolve_device(device))
    opts = ExecutorOptions(executor, address, cpus_per_run, eval_shards=eval_shards,
                           plugins=tuple(str(p) for p in plugins))
    for folder in run_dirs:
        with console.status(f"evaluating {folder}") as status, eval_sharding(opts, folder, dev, data_dir):
            values = evaluate_run(folder, _names(metrics), preset, dev, data_dir,
                                  progress=lambda m, s=status, f=folder: s.update(f"{f}: {m}"))
        console.print(f"[green]✓[/] {folder}")
        _print_metrics(values)


@app.command()
@friendly
def check(
    model: str = typer.Argument(..., help="model name (see `genbench list models`)"),
    dataset: str = typer.Option("synthetic", "--dataset", "-d",
                                help="a small dataset (synthetic-rgb for 64x64 models)"),
    plugins: list[Path] = typer.Option([], "--plugins", help="extra plugin folder"),
) -> None:
    """Smoke-check a model: one training step, samples, its capabilities and the metrics it
    will get (or why not, and which hook would unlock them). Exit 1 on a problem."""
    from genbench.check import check_model, format_check

    _load(plugins)
    result = check_model(model, dataset=dataset)
    console.print(format_check(result), highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


def _names(metrics: str | None) -> tuple[str, ...]:
    return tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else ()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _print_metrics(values: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    for key, value in sorted(values.items()):
        if not key.startswith("_") and key != "not_applicable":
            table.add_row(key, _fmt(value))
    console.print(table)


def print_summary(outcomes: list[Any], results: Path) -> None:
    keys = [k for k in SUMMARY_KEYS if any(k in o.metrics for o in outcomes)]
    table = Table(title="genbench results", title_justify="left", padding=(0, 1))
    for col in ("model", "seed", "status", *keys):
        table.add_column(col, justify="right" if col in keys else "left", no_wrap=True)
    for o in outcomes:
        config_seed = o.run_dir.name.split("seed")[-1].split("-")[0]
        cells = []
        for k in keys:
            v = o.metrics.get(k)
            se = o.metrics.get(f"{k}_stderr")
            cells.append("–" if v is None else _fmt(v) + (f"±{se:.2g}" if se is not None else ""))
        status = {"failed": "[red]failed[/]", "skipped": "[dim]earlier[/]", "finished": "done"}.get(
            o.status, o.status)
        table.add_row(o.run_dir.parts[-2], config_seed, status, *cells)
    console.print(table)
    for o in outcomes:
        if o.status == "failed":
            console.print(f"[red]failed[/] {o.run_dir}: {o.message}", highlight=False)
    console.print(f"results: {results.resolve()}   (next: genbench report --results {results})")


def _register_optional() -> None:
    """Commands whose implementation lives beside the library code they drive."""
    try:
        from genbench.commands import features_command

        app.command("features")(friendly(features_command))
    except ImportError:  # pragma: no cover
        pass
    try:
        from genbench.report.commands import gallery_command, report_command

        app.command("report")(friendly(report_command))
        app.command("gallery")(friendly(gallery_command))
    except ImportError:  # pragma: no cover
        pass


_register_optional()


def main() -> None:  # pragma: no cover
    app(prog_name="genbench")
    sys.exit(0)
