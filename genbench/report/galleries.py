"""The report's gallery section: for each model, one run's pictures decoded from its checkpoint.

The first finished seed with a checkpoint stands for its model. The pictures come from
:func:`genbench.galleries.render_all` (the report itself loads no checkpoint). A gallery not
meant for the model (the 2-D manifold of a 20-d latent, analogies of an unconditional model)
is left out without a word; one that should have been drawn but was not (a failure, a missing
evaluator classifier) is listed under "Not shown" with its reason, and never costs the rest
of the report.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from genbench.report import tables
from genbench.report.document import Document, Heading, Image, Para
from genbench.store import CHECKPOINT, inside


def folder_name(label: str) -> str:
    """A row label (``vae (latent_dim=2, lr=0.01)``) as a folder name safe in a file system
    and a markdown link."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in label).strip("-")


def representative(runs: pd.DataFrame, model: str) -> Path | None:
    fin = tables.finished(runs)
    fin = fin[fin["model"] == model].sort_values("seed")
    for d in fin["run_dir"]:
        if (Path(d) / CHECKPOINT).exists():
            return Path(d)
    return None


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


def add_across(doc: Document, runs: pd.DataFrame, img: Path, out: Path, summary) -> None:
    """The same test images reconstructed by every model, and samples of every generator
    from the same seed: one picture each, a row a model."""
    from genbench.galleries import render_across

    models = tables.model_order(set(tables.finished(runs)["model"]))
    dirs = {m: d for m in models if (d := representative(runs, m)) is not None}
    if len(dirs) < 2:
        return
    started = time.perf_counter()
    made = render_across(dirs, img, n=8, seed=0)
    summary.say(f"  galleries across models: {len(made.images)} ({time.perf_counter() - started:.1f} s)")
    what = {"reconstructions": "The same test images (top row) reconstructed by each model with an "
                               "encoder (the encoder's mean code, decoded), one row a model",
            "samples": "Samples of each model drawn from the same seed, one row a model"}
    for kind, path in made.images.items():
        summary.images.append(path)
        doc.add(Image(path.relative_to(out), f"{what[kind]}; rows, top to bottom: "
                      f"{', '.join(made.rows[kind])}.", zoom=2))


def add_galleries(doc: Document, runs: pd.DataFrame, img: Path, out: Path, summary) -> None:
    """Per model: its training progress, then one run's galleries decoded from its checkpoint."""
    from genbench.galleries import render_all

    doc.add(Heading(3, "Galleries"))
    add_across(doc, runs, img, out, summary)
    for model in tables.model_order(set(tables.finished(runs)["model"])):
        run_dir = representative(runs, model)
        doc.add(Heading(4, model))
        add_progress(doc, runs, model, img, out, summary)
        if run_dir is None and "external" in runs and runs.loc[runs["model"] == model,
                                                               "external"].astype(bool).all():
            doc.add(Para("Outside samples scored by `genbench score`: no model to decode galleries "
                         "from; the first 64 samples are in each run folder's samples.png."))
            continue
        if run_dir is None:
            doc.add(Para("No checkpoint.pt among its finished runs, so no galleries."))
            continue
        started = time.perf_counter()
        try:
            made = render_all(run_dir, inside(out, img / folder_name(model), "a gallery folder"), n=8,
                              steps=10, manifold_n=15)
        except Exception as err:  # noqa: BLE001  (a broken checkpoint must not cost the report)
            doc.add(Para(f"Could not load `{run_dir.name}`: {type(err).__name__}: {err}"))
            continue
        summary.say(f"  galleries of {model}: {len(made.images)} ({time.perf_counter() - started:.1f} s)")
        doc.add(Para(f"From run `{run_dir.name}` (seed {made.seed})."))
        for kind, path in made.images.items():
            summary.images.append(path)
            doc.add(Image(path.relative_to(out), f"{model}: {made.captions[kind]}",
                          zoom=1 if kind == "scatter" else 2))
        if made.skipped:  # only what a reader would not expect (not made.not_applicable)
            doc.add(Para("Not shown: " + "; ".join(f"{k}: {why}" for k, why in made.skipped.items())
                         + "."))
