"""The report's compression section: rate against distortion per model beside JPEG and JPEG
2000 (one plot per dataset group), and the distortion within the deck's 20% budget.

It reads only the ``compression_*`` keys of the store (see :mod:`genbench.metrics.compression`
for what they mean): ``compression_{bits,mse,psnr}_<t>`` for the model's first t steps and
``compression_{jpeg,jp2}_{bits,mse,psnr}_<t>`` for the codecs at the model's rate of step t.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from genbench.report import tables
from genbench.report.document import Cell, Document, Heading, Image, Table

PREFIX = "compression_"
STEP = re.compile(r"compression_(?:(jpeg|jp2)_)?(bits|mse|psnr)_(\d+)")
INTRO = ("Rate against distortion. A model's rate is the bits-back cost of the latents it sends, "
         "KL(q(z|x) || p(z)) / ln 2 bits per test image (for DRAW and Conv DRAW the first t steps, "
         "one point per t; one point for a one-shot encoder): what an ideal bits-back coder "
         "achieves on average, not a file. Its distortion is the decoder's mean from that code. "
         "JPEG and JPEG 2000 are files Pillow writes, headers included, matched image by image to "
         "the model's bits where a file that small exists (on 28x28 digits none does: their "
         "headers alone exceed a VAE's whole rate).")


def owns(key: str) -> bool:
    """True for a key this section shows (so the generic tables leave it out)."""
    return key.startswith(PREFIX) or key.startswith(f"na:{PREFIX}")


def glossary_items(keys: list[str]) -> tuple[str, ...]:
    """The glossary's one entry for all ``compression_*`` keys (none if no run has them)."""
    if not any(owns(k) for k in keys):
        return ()
    return ("**compression** (`compression_bits_<t>`, `compression_mse_<t>`, `compression_psnr_<t>`, "
            f"and `compression_jpeg_*`, `compression_jp2_*` at the same rates): {INTRO}",)


def curve_points(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, source, t): mean bits, MSE and PSNR over the finished runs' seeds."""
    runs = tables.finished(runs)
    rows = []
    for col in runs.columns:
        if (m := STEP.fullmatch(col)) is None or m[2] != "bits":
            continue
        codec, t = m[1], int(m[3])
        source = {None: "model", "jpeg": "JPEG", "jp2": "JPEG 2000"}[codec]
        for model, part in runs.groupby("model"):
            vals = {k: _mean(part, col.replace("_bits_", f"_{k}_")) for k in ("bits", "mse", "psnr")}
            if not math.isnan(vals["bits"]):
                rows.append({"model": model, "source": source, "t": t, **vals})
    return pd.DataFrame(rows, columns=["model", "source", "t", "bits", "mse", "psnr"])


def _mean(runs: pd.DataFrame, key: str) -> float:
    """The mean of a column over runs (nan when no run has it)."""
    return float(pd.to_numeric(runs[key], errors="coerce").mean()) if key in runs else math.nan


def rate_distortion_plot(runs: pd.DataFrame, path: Path) -> Path | None:
    """PSNR against bits: a line per model over its steps, the codecs' matched points pooled."""
    points = curve_points(runs)
    if points.empty:
        return None
    from genbench.report import plots  # matplotlib only when there is something to draw

    plt = plots.plt
    models = tables.model_order(set(points["model"]))
    colours = plots.palette(models)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for model in models:
        own = points[(points["model"] == model) & (points["source"] == "model")].sort_values("t")
        ax.plot(own["bits"], own["psnr"], marker="o", ms=3, color=colours[model], label=model)
    for source, style in (("JPEG", "s--"), ("JPEG 2000", "^:")):
        codec = points[points["source"] == source].drop_duplicates(["bits", "psnr"]).sort_values("bits")
        if not codec.empty:
            ax.plot(codec["bits"], codec["psnr"], style, color="0.35", ms=3, label=source)
    budget = _mean(tables.finished(runs), "compression_budget_bits")
    if not math.isnan(budget):
        ax.axvline(budget, color="0.6", lw=0.8)
        ax.annotate("20% of raw", (budget, ax.get_ylim()[0]), fontsize=7, color="0.4",
                    rotation=90, va="bottom", ha="right")
    ax.set_xscale("log")
    ax.set_xlabel("bits per image (models: bits-back rate; codecs: file size)")
    ax.set_ylabel("PSNR (dB) ↑")
    ax.legend(fontsize=7, frameon=False)
    return plots.save_small(fig, path)


def _within(points: pd.DataFrame, budget: float) -> pd.Series | None:
    """The model's point with the most bits not above ``budget`` (its best within budget)."""
    fits = points[points["bits"] <= budget]
    return None if fits.empty else fits.sort_values("bits").iloc[-1]


def budget_table(runs: pd.DataFrame) -> Table | None:
    """Distortion within the deck's budget (20% of the raw image): each model's last step that
    fits, and the codecs' best file that fits (n/a where none does)."""
    fin = tables.finished(runs)
    budget = _mean(fin, "compression_budget_bits")
    points = curve_points(runs)
    if points.empty or math.isnan(budget):
        return None
    raw = _mean(fin, "compression_raw_bits")
    rows = []
    for model in tables.model_order(set(points["model"])):
        own = points[(points["model"] == model) & (points["source"] == "model")]
        best = _within(own, budget)
        if best is None:
            first = f"n/a — its first point takes {own['bits'].min():.0f} bits"
            rows.append([Cell(tables.model_label(model, runs)), Cell("–"), Cell(first), Cell(""), Cell("")])
            continue
        rows.append(_row(tables.model_label(model, runs), f"{int(best['t'])}", best, raw))
    for source, prefix in (("JPEG", "jpeg_"), ("JPEG 2000", "jp2_")):
        vals = {k: _mean(fin, f"{PREFIX}{prefix}{k}_budget") for k in ("bits", "mse", "psnr")}
        if math.isnan(vals["bits"]):
            continue
        if vals["bits"] > budget:
            rows.append([Cell(source), Cell("–"), Cell(f"n/a — its smallest file is {vals['bits']:.0f} "
                                                       "bits"), Cell(""), Cell("")])
        else:
            rows.append(_row(source, "–", pd.Series(vals), raw))
    caption = (f"Within the deck's budget: {budget:.0f} bits per image, 20% of the raw image "
               f"({raw:.0f} bits). A model's row is its last step that fits.")
    return Table(["method", "steps sent", "bits (% of raw)", "MSE ↓", "PSNR (dB) ↑"], rows, caption)


def _row(name: str, steps: str, point: pd.Series, raw: float) -> list[Cell]:
    return [Cell(name), Cell(steps), Cell(f"{point['bits']:.0f} ({100 * point['bits'] / raw:.1f}%)"),
            Cell(f"{point['mse']:.3g}"), Cell(f"{point['psnr']:.2f}")]


def add_compression(doc: Document, runs: pd.DataFrame, img: Path, out: Path, images: list[Path]) -> None:
    """The section: the rate-distortion plot and the budget table, if any run recorded them."""
    path = rate_distortion_plot(runs, img / "compression.png")
    table = budget_table(runs)
    if path is None and table is None:
        return
    doc.add(Heading(3, "Compression"))
    if path is not None:
        images.append(path)
        doc.add(Image(path.relative_to(out), INTRO))
    if table is not None:
        doc.add(table)
