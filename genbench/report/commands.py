"""``genbench report`` and ``genbench gallery``: parse, call one library function, print."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from genbench.errors import GenbenchError

console = Console()
GALLERY_N_MAX = 64  # --n: the samples gallery draws n x n images (64: 4,096 images)


def report_command(
    results: Path = typer.Option(Path("results"), "--results", help="results folder to read"),
    out: Path = typer.Option(Path("reports"), "--out", help="folder for report.md, index.html, PNGs"),
    galleries: bool = typer.Option(True, "--galleries/--no-galleries",
                                   help="decode galleries from checkpoints"),
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
) -> None:
    """Decode one gallery from a run's checkpoint and write it as a PNG."""
    from genbench.galleries import GALLERIES, render
    from genbench.plugins import load_plugins

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
