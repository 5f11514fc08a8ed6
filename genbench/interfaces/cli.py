"""The command line: thin typed commands that parse, call one library function, print."""

from __future__ import annotations

import functools
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from genbench.errors import GenbenchError, GenbenchWarning, os_error_line

if TYPE_CHECKING:
    from genbench.registry import ResultKey

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="genbench: train generative models side by side and measure them alike.")
console = Console()
err_console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def summary_keys() -> dict[str, Any]:
    """The headline columns of `genbench run`'s table (the report has everything), as their
    metrics declare them (``ResultKey.headline``: which stay when the terminal is narrow)."""
    from genbench.report.glossary import headline_keys

    return {k.name: k for k in headline_keys()}


def friendly(fn: F) -> F:
    """GenbenchError or any OSError (full disk, name too long, a file in the way, no
    permission) -> one red line and exit code 2; Ctrl-C -> a note and exit code 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GenbenchError as err:
            err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as err:  # a full disk, a long name, a file in the way: every command alike
            err_console.print(f"[bold red]error:[/] {os_error_line(err)}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(2) from None
        except MemoryError:
            err_console.print("[bold red]error:[/] out of memory; use a smaller preset or fewer "
                              "images", highlight=False)
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
    from genbench.interfaces import listing
    from genbench.interfaces.listcache import cached_sections

    def make() -> list[tuple[str, list[tuple[str, str]]]]:
        _load(plugins)
        return listing.sections(what)

    if what not in (*listing.KINDS, "all"):
        listing.sections(what)  # the one-line error, before any plugin is imported
    for title, rows in cached_sections(what, plugins, make):
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
    log: list[str] = typer.Option([], "--log", help="tensorboard | wandb (repeatable; README: TensorBoard)"),
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
    from genbench.executors import options_for
    from genbench.running.runs import RunRequest, run_all

    _load(plugins)
    opts = options_for(executor, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run,
                       max_retries=max_retries, eval_shards=eval_shards, partition=slurm_partition,
                       time_limit=slurm_time, cluster=slurm_cluster, dry_run=dry_run,
                       plugins=tuple(str(p) for p in plugins))
    started = time.perf_counter()
    request = RunRequest(tuple(models), dataset=dataset, variant=variant, preset=preset,
                         seeds=tuple(seed), epochs=epochs, device=device, overrides=tuple(set_),
                         results=results, metrics=_names(metrics), data_dir=data_dir, force=force,
                         log=tuple(log), executor=opts)
    outcomes = run_all(request, console, plan_only=plan)
    if plan or dry_run and not outcomes:
        return
    print_summary(outcomes, results, seconds=time.perf_counter() - started)
    if any(o.status in ("failed", "busy") for o in outcomes):  # busy: held by another process
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
    allow_unfinished: bool = typer.Option(False, "--allow-unfinished",
                                          help="score an unfinished run's last checkpoint"),
) -> None:
    """Add metrics to finished runs without retraining."""
    from genbench.executors import eval_sharding, options_for
    from genbench.running.display import EvalDisplay
    from genbench.running.evaluation import check_run_folder, evaluate_run
    from genbench.running.training import resolve_device
    from genbench.store import CONFIG, METRICS, read_json

    _load(plugins)
    dev = str(resolve_device(device))
    opts = options_for(executor, address=address, cpus_per_run=cpus_per_run, eval_shards=eval_shards,
                       plugins=tuple(str(p) for p in plugins))
    for folder in run_dirs:  # every folder checked before any is evaluated
        check_run_folder(folder)
    for folder in run_dirs:
        console.print(f"evaluating {folder}", highlight=False)
        before = read_json(Path(folder) / METRICS)
        budget = before.get("eval_preset") or read_json(Path(folder) / CONFIG).get(
            "preset", {}).get("name")
        if preset is not None and budget is not None and preset != budget:
            console.print(f"its numbers were measured under {budget}: every metric of the run is "
                          f"measured again under {preset} (a row holds one budget)", highlight=False)
        watch = EvalDisplay(console)
        try:
            with eval_sharding(opts, folder, dev, data_dir):
                values = evaluate_run(folder, _names(metrics), preset, dev, data_dir, progress=watch,
                                      allow_unfinished=allow_unfinished)
        finally:
            watch.stop()
        console.print(f"[green]✓[/] {folder}")
        _print_changes(before, values)


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
    from genbench.running.check import check_model, format_check

    _load(plugins)
    result = check_model(model, dataset=dataset)
    console.print(format_check(result), highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


def _names(metrics: str | None) -> tuple[str, ...]:
    return tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else ()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def changes(before: dict[str, Any], after: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, new value, old value) of the metrics ``genbench eval`` measured or changed; a
    metric's ``_stderr`` is shown in its cell; unchanged keys and bookkeeping are left out."""
    out = []
    for key in sorted(after):
        if key.startswith("_") or key == "not_applicable" or key.endswith(("_stderr", "eval_seconds")):
            continue
        old, new = before.get(key), after[key]
        old_se, new_se = before.get(f"{key}_stderr"), after.get(f"{key}_stderr")
        if (old, old_se) != (new, new_se):
            out.append((key, _with_se(new, new_se), "" if old is None else _with_se(old, old_se)))
    na_before = before.get("not_applicable", {})
    for key, reason in sorted(after.get("not_applicable", {}).items()):
        if na_before.get(key) != reason:
            out.append((key, f"n/a — {reason}", ""))
    return out


def _with_se(value: Any, se: Any) -> str:
    return _fmt(value) + (f" ± {se:.2g}" if isinstance(se, (int, float)) else "")


def _print_changes(before: dict[str, Any], after: dict[str, Any]) -> None:
    rows = changes(before, after)
    if not rows:
        console.print("nothing changed", highlight=False)
        return
    table = Table(show_header=True, box=None, header_style="dim")
    for col in ("metric", "now", "was"):
        table.add_column(col, overflow="fold")
    for key, new, old in rows:
        table.add_row(key, new, old or "[dim]–[/]")
    console.print(table)


def _cell(metrics: dict[str, Any], key: str, declared: ResultKey | None = None) -> str:
    v = metrics.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return "–"
    se = metrics.get(f"{key}_stderr")
    # flagged as the report flags it: an estimate with flags that BDMC did not certify
    trust = declared.trust(metrics) if declared is not None else None
    return (_fmt(float(v)) + (f"±{se:.2g}" if isinstance(se, (int, float)) else "")
            + (" ⚠" if trust not in (None, "certified") else ""))


def _same_as_own(outcomes: list[Any], key: str) -> bool:
    """True for a shared-family column (``test_ais_shared``) that repeats its own-decoder twin
    in every row that has it (a Bernoulli VAE's shared family is its own decoder): the
    column would only push a telling one off the table."""
    own = key.removesuffix("_shared")
    if own == key:
        return False
    rows = [o.metrics for o in outcomes if _cell(o.metrics, key) != "–"]
    return bool(rows) and all(_cell(m, key) == _cell(m, own) for m in rows)


def summary_table(outcomes: list[Any], width: int) -> tuple[Table, list[str]]:
    """The closing table of `genbench run` and the metric columns left out of it.

    Numbers are never cut: when the terminal is too narrow for every headline column, the
    most telling ones (lowest ``ResultKey.headline``) are kept whole and the rest are named below.
    """
    from rich.text import Text

    from genbench.report.glossary import direction

    heads = summary_keys()
    present = [k for k in heads if any(_cell(o.metrics, k) != "–" for o in outcomes)
               and not _same_as_own(outcomes, k)]
    status = {"failed": "[red]failed[/]", "skipped": "[dim]earlier[/]", "finished": "done"}
    rows = [[o.run_dir.parts[-2], o.run_dir.name.rsplit("-", 1)[0].rsplit("-seed", 1)[-1],
             status.get(o.status, o.status)] for o in outcomes]
    headers = {k: k + {True: " ↑", False: " ↓", None: ""}[direction(k)] for k in present}
    columns = {"model": [r[0] for r in rows], "seed": [r[1] for r in rows],
               "status": [r[2] for r in rows],
               **{headers[k]: [_cell(o.metrics, k, heads[k]) for o in outcomes] for k in present}}

    def need(cols: list[str]) -> int:  # cell widths + padding 1 each side + the borders
        return sum(max(Text.from_markup(c).cell_len for c in [col, *columns[col]]) + 2
                   for col in cols) + len(cols) + 1

    shown: list[str] = ["model", "seed", "status"]
    for k in sorted(present, key=lambda k: heads[k].headline):
        if need([*shown, headers[k]]) <= width:
            shown.append(headers[k])
    keys = [k for k in present if headers[k] in shown]
    table = Table(title="genbench results", title_justify="left", padding=(0, 1))
    for col in ("model", "seed", "status", *keys):
        table.add_column(headers.get(col, col), justify="right" if col in keys else "left",
                         no_wrap=True)
    for i, r in enumerate(rows):
        table.add_row(*r, *(columns[headers[k]][i] for k in keys))
    return table, [k for k in present if k not in keys]


def print_summary(outcomes: list[Any], results: Path, out: Console | None = None,
                  seconds: float | None = None) -> None:
    """The closing table of ``genbench run``, failures, where the results are and, given
    ``seconds``, the command's total wall time."""
    out = out or console
    table, hidden = summary_table(outcomes, out.width)
    out.print(table)
    if hidden:
        out.print(f"[dim]not shown: {', '.join(hidden)} (widen the terminal, or genbench report)[/]",
                  highlight=False)
    for o in outcomes:
        if o.status == "failed":
            out.print(f"[red]failed[/] {o.run_dir}: {o.message}", highlight=False)
    if seconds is not None:
        out.print(f"total wall time: {_duration(seconds)}", highlight=False)
    out.print(f"results: {results.resolve()}   (next: genbench report --results {results})")


def _duration(seconds: float) -> str:
    """12.3 s, 4 min 05 s, 1 h 02 min."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


@app.command("export")
@friendly
def export_cmd(
    results: Path = typer.Argument(Path("results"), help="results folder"),
    format: str = typer.Option("csv", "--format", "-f", help="csv | parquet"),
    out: Path | None = typer.Option(None, "--out", "-o", help="default RESULTS/results.FORMAT"),
    plugins: list[Path] = typer.Option([], "--plugins", help="extra plugin folder"),
) -> None:
    """Write every run's metrics as one tidy table (a row per run and metric) to CSV or Parquet."""
    from genbench.interfaces.export import export_results

    _load(plugins)
    path = export_results(results, format, out)
    console.print(f"wrote {path}", highlight=False)

def _register_optional() -> None:
    """Commands whose implementation lives beside the library code they drive."""
    try:
        from genbench.interfaces.commands import features_command

        app.command("features")(friendly(features_command))
        from genbench.interfaces.commands import score_command, stats_command

        app.command("score")(friendly(score_command))
        app.command("stats")(friendly(stats_command))
    except ImportError:  # pragma: no cover
        pass
    try:
        from genbench.interfaces.report_cli import gallery_command, report_command

        app.command("report")(friendly(report_command))
        app.command("gallery")(friendly(gallery_command))
    except ImportError:  # pragma: no cover
        pass


_register_optional()


def main() -> None:  # pragma: no cover
    app(prog_name="genbench")
    sys.exit(0)
