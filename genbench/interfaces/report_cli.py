"""``genbench report`` and ``genbench gallery``: parse, call one library function, print.

Kept out of :mod:`genbench.report`, which reads only the store: these load plugins, and
``genbench gallery`` decodes checkpoints (:mod:`genbench.galleries`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from genbench.errors import GenbenchError

if TYPE_CHECKING:
    import pandas as pd

console = Console()
GALLERY_N_MAX = 64  # --n: the samples gallery draws n x n images (64: 4,096 images)


def report_command(
    results: Path = typer.Option(Path("results"), "--results", help="results folder to read"),
    out: Path = typer.Option(Path("reports"), "--out", help="folder for report.md, index.html, PNGs"),
    galleries: bool = typer.Option(True, "--galleries/--no-galleries",
                                   help="place the galleries found in the results folder"),
    plugins: list[Path] = typer.Option([], "--plugins", help="extra plugin folder (models of the runs)"),
) -> None:
    """Write the comparison report (tables, plots, galleries) from a results folder."""
    from genbench.plugins import load_plugins
    from genbench.report.build import build_report

    load_plugins(plugins)
    s = build_report(results, out, galleries=galleries,
                     progress=lambda line: console.print(line, highlight=False, soft_wrap=True))
    for note in s.notes:
        console.print(f"[bold yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"[bold green]report[/] {s.out / 'index.html'} and {s.out / 'report.md'}: "
                  f"{s.runs} runs in {s.groups} groups ({s.failed} not finished), "
                  f"{len(s.images)} images, {s.seconds:.1f} s", highlight=False)


def parse_endpoints(text: str) -> tuple[int, ...]:
    """'0,5,2,7' -> (0, 5, 2, 7): pairs of test-image indices."""
    try:
        idx = tuple(int(t) for t in text.replace(" ", "").split(",") if t)
    except ValueError:
        raise GenbenchError(f"--endpoints takes comma-separated test-image indices like 0,5,2,7; "
                            f"got {text!r}") from None
    if len(idx) % 2:
        raise GenbenchError(f"--endpoints takes pairs of indices (start,end,...); got {len(idx)}")
    return idx


def gallery_command(
    run_dir: Path = typer.Argument(None, help="a run folder: results/<dataset>/<model>/<run-id>"),
    kind: str | None = typer.Option(None, "--kind", "-k", help="which gallery (samples by default); "
                                    "`genbench gallery` with no RUN_DIR lists the kinds"),
    endpoints: str | None = typer.Option(None, "--endpoints", help="interpolation: test-image index "
                                         "pairs, e.g. 0,5,2,7 (default: 4 pairs of different classes)"),
    steps: int | None = typer.Option(None, "--steps", help="interpolation: images per row, endpoints "
                                     "included (default 10)"),
    mode: str | None = typer.Option(None, "--mode", help="interpolation: linear | slerp | both"),
    target: str | None = typer.Option(None, "--attribute", "--class",
                                      help="arithmetic: one class (e.g. 7) or attribute (e.g. Smiling)"),
    strength: float | None = typer.Option(None, "--strength", help="arithmetic: multiple of the vector"),
    n: int | None = typer.Option(None, "--n", help="images per row (samples) or rows (arithmetic)"),
    seed: int = typer.Option(0, "--seed", help="seed of the gallery's random draws"),
    out: Path | None = typer.Option(None, "--out", "-o", help="PNG path (default RUN_DIR/gallery_KIND.png)"),
    plugins: list[Path] = typer.Option([], "--plugins", help="extra plugin folder (the run's model)"),
    results: Path | None = typer.Option(None, "--results", help="instead of RUN_DIR: draw what "
                                        "`genbench report` shows of this results folder (each "
                                        "model's galleries, the pictures across models)"),
) -> None:
    """Decode one gallery from a run's checkpoint and write it as a PNG (or, with --results,
    every gallery the report shows that is not drawn yet)."""
    from genbench.galleries import GALLERIES, render
    from genbench.plugins import load_plugins

    if results is not None:
        if run_dir is not None or kind is not None:
            raise GenbenchError("--results draws every gallery the report shows; pass it without "
                                "RUN_DIR and --kind")
        load_plugins(plugins)
        made = draw_for_report(results, progress=lambda line: console.print(line, highlight=False,
                                                                             soft_wrap=True))
        console.print(f"[bold green]galleries[/] {len(made)} pictures under {results} "
                      f"(next: genbench report --results {results})", highlight=False)
        return
    if run_dir is None or kind == "":
        for name, g in GALLERIES.items():
            console.print(f"[bold]{name}[/] (needs {', '.join(sorted(g.needs))}): {g.description}",
                          highlight=False)
        return
    load_plugins(plugins)
    modes = {"both": ("linear", "slerp"), "linear": ("linear",), "slerp": ("slerp",)}
    if mode is not None and mode not in modes:
        raise GenbenchError(f"--mode {mode!r}: use linear, slerp or both")
    if steps is not None and steps < 2:
        raise GenbenchError(f"--steps {steps}: needs at least 2 (the two endpoints)")
    if n is not None and not 1 <= n <= GALLERY_N_MAX:  # samples draw n x n images
        raise GenbenchError(f"--n {n}: use 1 to {GALLERY_N_MAX}")
    given = {"endpoints": None if endpoints is None else parse_endpoints(endpoints), "steps": steps,
             "modes": None if mode is None else modes[mode], "target": target,
             "strength": strength, "n": n}
    options = {k: v for k, v in given.items() if v is not None}
    path = render(run_dir, kind or "samples", out, seed=seed, **options)
    console.print(f"[bold green]gallery[/] {path}", highlight=False)


def draw_for_report(results: Path, progress: Callable[[str], None] = lambda _: None) -> list[Path]:
    """Draw into ``results`` what ``genbench report`` shows and evaluation did not draw: each
    row's galleries (its first finished seed with a checkpoint, unless a finished seed of it
    has galleries already) and, per group, the pictures across models. Returns the PNGs."""
    import time

    from genbench.galleries.stored import draw_across, draw_run, drawn, record_failure
    from genbench.report import tables
    from genbench.store import CHECKPOINT, across_dir

    results = Path(results)
    if not results.is_dir():
        raise GenbenchError(f"results folder {results} does not exist; pass --results DIR")
    made: list[Path] = []
    for (dataset, variant, preset), runs in tables.groups(tables.load(results)):
        group = " · ".join((dataset, variant, preset))
        loadable = {}  # row label -> its first finished seed with a checkpoint
        for label in tables.model_order(set(tables.finished(runs)["model"])):
            seeds = [Path(d) for d in _by_seed(runs, label)]
            run_dir = next((d for d in seeds if (d / CHECKPOINT).is_file()), None)
            if run_dir is not None:
                loadable[label] = run_dir
            if run_dir is None or any(drawn(d) for d in seeds):
                continue  # drawn at evaluation (or before), or nothing to draw from
            started = time.perf_counter()
            try:
                run = draw_run(run_dir)
            except Exception as err:  # noqa: BLE001  (one broken checkpoint must not cost the rest)
                progress(f"{label} ({group}): could not load {run_dir.name}: {record_failure(run_dir, err)}")
                continue
            made += run.images.values()
            progress(f"galleries of {label} ({group}): {len(run.images)} "
                     f"({time.perf_counter() - started:.1f} s)")
        if len(loadable) >= 2:
            folder = across_dir(results, dataset, variant, preset)
            index = draw_across(loadable, folder)
            made += [folder / i["file"] for i in index["images"]]
            progress(f"across models ({group}): {len(index['images'])} pictures")
    return made


def _by_seed(runs: pd.DataFrame, label: str) -> list[str]:
    fin = runs[(runs["status"] == "finished") & (runs["model"] == label)]
    return list(fin.sort_values("seed")["run_dir"])
