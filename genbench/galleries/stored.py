"""Galleries into the store: decoded where a model is loaded, placed by the report.

The report reads only the store (it never loads a checkpoint or a plugin), so the pictures it
shows are drawn here and written beside the run: at the end of a run's evaluation, with the
model still in memory, or by ``genbench gallery --results`` for runs evaluated without them
and for the pictures across a group's models. The layout is :mod:`genbench.store`'s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from genbench import store
from genbench.galleries import RunGalleries, render_across, render_all
from genbench.loading import LoadedRun

# what the report shows of each gallery: 8 images a row, 10 interpolation steps, a 15 x 15
# manifold
REPORT_OPTIONS: dict[str, Any] = {"n": 8, "steps": 10, "manifold_n": 15}


def draw_run(run_dir: Path, run: LoadedRun | None = None, seed: int = 0) -> RunGalleries:
    """Every gallery that applies to the run, as ``<run_dir>/galleries/<kind>.png`` plus
    ``galleries.json`` (seed, captions in order, what was not drawn and why). ``run``: the run
    already in memory; without it the checkpoint is loaded (and a run that cannot be loaded
    raises)."""
    run_dir = Path(run_dir)
    folder = run_dir / store.GALLERIES
    made = render_all(run_dir, folder, seed=seed, run=run, **REPORT_OPTIONS)
    store.write_json(folder / store.GALLERY_INDEX, {
        "model": made.model, "seed": made.seed, "gallery_seed": seed,
        "images": [{"kind": k, "file": p.name, "caption": made.captions[k]} for k, p in made.images.items()],
        "skipped": made.skipped, "not_applicable": made.not_applicable})
    return made


def record_failure(run_dir: Path, err: BaseException) -> str:
    """A run that could not be loaded: its galleries.json says why (the report shows it), and
    the next ``genbench gallery --results`` tries again."""
    why = f"{type(err).__name__}: {err}"
    store.write_json(Path(run_dir) / store.GALLERIES / store.GALLERY_INDEX, {"error": why})
    return why


def drawn(run_dir: Path) -> bool:
    """Whether the run's galleries are in the store (an index that records no failure)."""
    index = store.read_index(Path(run_dir) / store.GALLERIES / store.GALLERY_INDEX)
    return bool(index) and "error" not in index


def draw_at_evaluation(run_dir: Path, run: LoadedRun, note: Callable[[str], None]) -> None:
    """The runner's gallery step (skipped by the presets in
    :data:`genbench.presets.NO_GALLERIES_AT_EVALUATION`): after the metrics are written, never
    at their cost (a gallery that fails is recorded in galleries.json; anything else is one
    note)."""
    started = time.perf_counter()
    try:
        made = draw_run(run_dir, run)
    except Exception as err:  # noqa: BLE001  (pictures must not cost a finished run)
        note(f"galleries not drawn ({type(err).__name__}: {err}); `genbench gallery --results` "
             "draws them later")
        return
    note(f"galleries: {len(made.images)} in {time.perf_counter() - started:.1f} s")


def draw_across(run_dirs: Mapping[str, Path], out_dir: Path, seed: int = 0) -> dict[str, Any]:
    """The pictures across models (:func:`genbench.galleries.render_across`) into ``out_dir``
    with ``across.json`` (for each picture its file and row labels, top to bottom)."""
    made = render_across(run_dirs, out_dir, n=REPORT_OPTIONS["n"], seed=seed)
    index = {"images": [{"kind": k, "file": p.name, "rows": made.rows[k]} for k, p in made.images.items()],
             "skipped": made.skipped}
    if made.images:
        store.write_json(Path(out_dir) / store.ACROSS_INDEX, index)
    return index
