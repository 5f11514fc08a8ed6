"""The report's gallery section: for each model, the pictures drawn where its model was loaded.

The report reads only the store: it never loads a checkpoint or a plugin. The galleries were
decoded at the end of a run's evaluation (or by ``genbench gallery --results``) into
``<run>/galleries/`` with an index (:mod:`genbench.galleries.stored`); the pictures across a
group's models into ``<results>/<dataset>/_across/``. The first finished seed with galleries
stands for its model. A gallery not meant for the model (the 2-D manifold of a 20-d latent,
analogies of an unconditional model) is left out without a word; one that should have been
drawn but was not (a failure, a missing evaluator classifier) is listed under "Not shown"
with its reason. Where no pictures were drawn, one line says which command draws them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from genbench import store
from genbench.report import tables
from genbench.report.document import Document, Heading, Image, Para
from genbench.store import inside


def folder_name(label: str) -> str:
    """A row label (``vae (latent_dim=2, lr=0.01)``) as a folder name safe in a file system
    and a markdown link."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-")


def _draw_hint(results: Path, summary) -> str:
    """The one line that says which command draws what the store lacks (and, once, a warning
    on the command line)."""
    note = f"some galleries are not drawn yet: genbench gallery --results {results.as_posix()}"
    if note not in summary.notes:
        summary.notes.append(note)
    return f"`genbench gallery --results {results.as_posix()}` draws them"


def representative(runs: pd.DataFrame, model: str) -> Path | None:
    """The first finished seed of ``model`` whose galleries are in the store, else the first
    whose index records why they could not be drawn."""
    fin = tables.finished(runs)
    fin = fin[fin["model"] == model].sort_values("seed")
    indexed = [Path(d) for d in fin["run_dir"] if (Path(d) / store.GALLERIES / store.GALLERY_INDEX).is_file()]
    good = [d for d in indexed if "error" not in store.read_index(d / store.GALLERIES / store.GALLERY_INDEX)]
    return (good or indexed or [None])[0]


def has_checkpoint(runs: pd.DataFrame, model: str) -> bool:
    """Whether a finished run of ``model`` still has its checkpoint (the file, never opened):
    then ``genbench gallery --results`` can draw what is missing."""
    fin = tables.finished(runs)
    return any((Path(d) / store.CHECKPOINT).is_file() for d in fin[fin["model"] == model]["run_dir"])


def _place(src: Path, target: Path, out: Path) -> Path | None:
    """Copy a stored picture into the report's folder (the report stays one folder)."""
    if not src.is_file():
        return None
    target = inside(out, target, "an image path")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, target)
    return target


def add_progress(doc: Document, runs: pd.DataFrame, model: str, img: Path, out: Path, summary) -> None:
    """The fixed-noise sample grids over training (from the store; no checkpoint needed)."""
    from genbench.report.epochs import progress_strip

    fin = tables.finished(runs)
    for d in fin[fin["model"] == model].sort_values("seed")["run_dir"]:
        target = inside(out, img / folder_name(model) / "progress.png", "an image path")
        path = progress_strip(Path(d), target)
        if path is not None:
            summary.images.append(path)
            doc.add(Image(path.relative_to(out), f"{model}: the same noise decoded after each of a few "
                          "epochs (top to bottom), from the runner's per-epoch grids.", zoom=2))
            return


def add_across(doc: Document, runs: pd.DataFrame, results: Path, img: Path, out: Path,
               summary) -> None:
    """The same test images reconstructed by every model, and samples of every generator
    from the same seed: one picture each, a row a model (drawn by ``genbench gallery
    --results``)."""
    if len(set(tables.finished(runs)["model"])) < 2:
        return
    first = runs.iloc[0]
    folder = store.across_dir(results, str(first["dataset"]), str(first["variant"]), str(first["preset"]))
    index = store.read_index(folder / store.ACROSS_INDEX)
    what = {"reconstructions": "The same test images (top row) reconstructed by each model with an "
                               "encoder (the encoder's mean code, decoded), one row a model",
            "samples": "Samples of each model drawn from the same seed, one row a model"}
    placed = 0
    for item in index.get("images", []):
        path = _place(folder / str(item.get("file")), img / f"across_{item.get('kind')}.png", out)
        if path is None:
            continue
        placed += 1
        summary.images.append(path)
        caption = what.get(item.get("kind"), str(item.get("kind")))
        doc.add(Image(path.relative_to(out), f"{caption}; rows, top to bottom: "
                      f"{', '.join(map(str, item.get('rows', [])))}.", zoom=2))
    if not placed and sum(has_checkpoint(runs, m) for m in set(tables.finished(runs)["model"])) >= 2:
        doc.add(Para(f"No pictures across models in the results folder: {_draw_hint(results, summary)}."))


def add_galleries(doc: Document, runs: pd.DataFrame, results: Path, img: Path, out: Path,
                  summary) -> None:
    """Per model: its training progress, then the galleries its evaluation drew."""
    doc.add(Heading(3, "Galleries"))
    add_across(doc, runs, results, img, out, summary)
    for model in tables.model_order(set(tables.finished(runs)["model"])):
        doc.add(Heading(4, model))
        add_progress(doc, runs, model, img, out, summary)
        add_run_galleries(doc, runs, model, results, img / folder_name(model), out, summary)


def add_run_galleries(doc: Document, runs: pd.DataFrame, model: str, results: Path, img: Path,
                      out: Path, summary) -> None:
    run_dir = representative(runs, model)
    if run_dir is None and "external" in runs and runs.loc[runs["model"] == model,
                                                           "external"].astype(bool).all():
        doc.add(Para("Outside samples scored by `genbench score`: no model to decode galleries "
                     "from; the first 64 samples are in each run folder's samples.png."))
        return
    if run_dir is None:
        doc.add(Para(f"No galleries in the results folder for its finished runs: "
                     f"{_draw_hint(results, summary)}." if has_checkpoint(runs, model) else
                     "No galleries, and no checkpoint.pt among its finished runs to draw them from."))
        return
    index = store.read_index(run_dir / store.GALLERIES / store.GALLERY_INDEX)
    if "error" in index:  # recorded by `genbench gallery --results`
        doc.add(Para(f"Could not load `{run_dir.name}`: {index['error']}"))
        return
    doc.add(Para(f"From run `{run_dir.name}` (seed {index.get('seed', '?')})."))
    for item in index.get("images", []):
        kind = str(item.get("kind"))
        path = _place(run_dir / store.GALLERIES / str(item.get("file")), img / f"{kind}.png", out)
        if path is not None:
            summary.images.append(path)
            doc.add(Image(path.relative_to(out), f"{model}: {item.get('caption', kind)}",
                          zoom=1 if kind == "scatter" else 2))
    skipped = index.get("skipped") or {}  # only what a reader would not expect
    if skipped:
        doc.add(Para("Not shown: " + "; ".join(f"{k}: {why}" for k, why in skipped.items()) + "."))
