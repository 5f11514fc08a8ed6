"""The report's gallery section: for each model, one run's pictures decoded from its checkpoint.

The first finished seed with a checkpoint stands for its model. A gallery that does not
apply (no encoder, a latent that is not 2-D) is skipped with its reason in the text, and a
gallery that fails never costs the rest of the report.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genbench.errors import GenbenchError
from genbench.report import tables
from genbench.report.document import Document, Heading, Image, Para
from genbench.store import CHECKPOINT, METRICS, read_json

CAPTIONS = {
    "samples": "Samples from the prior (fixed noise).",
    "reconstructions": "Test inputs (odd rows) above their reconstructions (even rows).",
    "interpolation": "Latent interpolation {how}; in each pair of rows linear above spherical (slerp).",
    "arithmetic": "Latent arithmetic on {rows}: {edits}",
    "manifold": "The 2-D latent manifold (Kingma & Welling 2013, Fig. 4): a grid through the inverse "
                "Gaussian CDF.",
    "scatter": "Test codes coloured by class (first two principal components when the latent is "
               "wider than 2-D).",
    "analogies": "Analogies: each row keeps one test image's style z and decodes it with every label.",
}


def arithmetic_note(run) -> dict[str, str]:
    """How the arithmetic gallery was made, for its caption."""
    from genbench.report.arithmetic import default_edits
    from genbench.report.gallery import has_encoder

    rows = ("test images (first column) and their unedited reconstructions (second)"
            if has_encoder(run.model) else
            "prior draws (first column: unedited), vectors from 500 samples labelled by the "
            "evaluator classifier")
    if run.data.info.num_classes:
        edits = "then each code moved to every class mean in turn, z - mean[y] + mean[k]"
    else:
        shown = [f"{a} {s:+g}" for a, s in default_edits(run.data.info.label_names)]
        edits = ("then the attribute edits " + ", ".join(shown) + " (unit mean-difference vectors, "
                 "strength in prior standard deviations)")
    return {"rows": rows, "edits": edits + "."}


def representative(runs: pd.DataFrame, model: str) -> Path | None:
    fin = tables.finished(runs)
    fin = fin[fin["model"] == model].sort_values("seed")
    for d in fin["run_dir"]:
        if (Path(d) / CHECKPOINT).exists():
            return Path(d)
    return None


def kinds_for(model: object) -> list[str]:
    from genbench.report.gallery import has_encoder

    kinds = ["samples"] if callable(getattr(model, "sample", None)) else []
    if has_encoder(model):
        kinds.append("reconstructions")
    if has_encoder(model) or callable(getattr(model, "prior", None)):
        kinds += ["interpolation", "arithmetic"]
    prior = getattr(model, "prior", None)
    if callable(prior) and prior().mean.shape[-1] == 2:
        kinds.append("manifold")
    if has_encoder(model):
        kinds.append("scatter")
    if getattr(model, "conditional", False):
        kinds = [k for k in kinds if k != "arithmetic"] + ["analogies"]
    return kinds


def add_progress(doc: Document, runs: pd.DataFrame, model: str, img: Path, out: Path, summary) -> None:
    """The fixed-noise sample grids over training (from the store; no checkpoint needed)."""
    from genbench.report.epochs import progress_strip

    fin = tables.finished(runs)
    for d in fin[fin["model"] == model].sort_values("seed")["run_dir"]:
        path = progress_strip(Path(d), img / model / "progress.png")
        if path is not None:
            summary.images.append(path)
            doc.add(Image(path.relative_to(out), f"{model}: the same noise decoded after each of a few "
                          "epochs (top to bottom), from the runner's per-epoch grids.", zoom=2))
            return


def add_galleries(doc: Document, runs: pd.DataFrame, img: Path, out: Path, summary) -> None:
    """Per model: its training progress, then one run's galleries decoded from its checkpoint."""
    from genbench.evaluation import load_run

    doc.add(Heading(3, "Galleries"))
    for model in tables.model_order(set(tables.finished(runs)["model"])):
        run_dir = representative(runs, model)
        doc.add(Heading(4, model))
        add_progress(doc, runs, model, img, out, summary)
        if run_dir is None:
            doc.add(Para("No checkpoint.pt among its finished runs, so no galleries."))
            continue
        try:
            run = load_run(run_dir)
        except Exception as err:  # a broken checkpoint must not cost the report
            doc.add(Para(f"Could not load `{run_dir.name}`: {type(err).__name__}: {err}"))
            continue
        doc.add(Para(f"From run `{run_dir.name}` (seed {run.seed})."))
        add_run_galleries(doc, run, run_dir, img / model, out, summary)


def add_run_galleries(doc: Document, run, run_dir: Path, img: Path, out: Path, summary) -> None:
    """Every gallery that applies to the loaded run; the others listed with their reason."""
    from genbench.report.gallery import GalleryOptions, density_note, render

    space = read_json(run_dir / METRICS).get("feature_space")
    opts = GalleryOptions(n=8, steps=10, manifold_n=15, feature_space=space)
    model, skipped = run.config["model"], []
    for kind in kinds_for(run.model):
        path = img / f"{kind}.png"
        try:
            render(run, kind, path, opts)
        except GenbenchError as err:
            skipped.append(f"{kind}: n/a — {err}")
            continue
        except Exception as err:  # noqa: BLE001  (one gallery's bug must not cost the report)
            skipped.append(f"{kind}: failed — {type(err).__name__}: {err}")
            continue
        summary.images.append(path)
        caption = CAPTIONS[kind].format(how=density_note(run), **arithmetic_note(run))
        doc.add(Image(path.relative_to(out), f"{model}: {caption}", zoom=1 if kind == "scatter" else 2))
    if skipped:
        doc.add(Para("Not shown: " + "; ".join(skipped) + "."))
