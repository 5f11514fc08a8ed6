"""Pictures across models: the same test images reconstructed by every model with an
encoder, and samples from every generator drawn from the same seed, one row a model.

A per-run gallery shows one model; these put a group's models side by side, as a reader
compares them. Each model is rebuilt from one run's checkpoint; its generator is seeded
afresh with ``seed`` (so every model's row starts from the same random state, though models
with different latent sizes read different noise from it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from genbench.contract import capabilities, sample_from
from genbench.galleries.core import save_png_grid, test_images
from genbench.images import reconstruct
from genbench.loading import load_run
from genbench.metrics.sampling import labels_for


@dataclass
class Across:
    """What :func:`render_across` made: picture -> path and the row labels, top to bottom."""

    images: dict[str, Path] = field(default_factory=dict)  # "reconstructions", "samples"
    rows: dict[str, list[str]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # row label -> why it is missing


@torch.no_grad()
def render_across(run_dirs: Mapping[str, Path], out_dir: Path, *, n: int = 8, seed: int = 0) -> Across:
    """``out_dir/across_reconstructions.png`` (first row: the test images, then one row of
    reconstructions per model with an encoder and a decoder) and ``out_dir/across_samples.png``
    (one row of ``n`` samples per model that samples). ``run_dirs``: row label -> run folder,
    all of one dataset and variant (the same test images). A run that cannot be loaded is
    skipped with its reason."""
    done = Across()
    recon: list[torch.Tensor] = []
    samples: list[torch.Tensor] = []
    for label, run_dir in run_dirs.items():
        try:
            run = load_run(Path(run_dir))
        except Exception as err:  # noqa: BLE001  (one broken checkpoint must not cost the others)
            done.skipped[label] = f"{type(err).__name__}: {err}"
            continue
        have = capabilities(run.model)
        if {"encode", "generate"} <= have:
            x, y = test_images(run, n)
            if not recon:
                recon.append(x.float().cpu())
                done.rows.setdefault("reconstructions", []).append("test images")
            recon.append(reconstruct(run.model, x, labels_for(run.model, y)).float().clamp(0, 1).cpu())
            done.rows.setdefault("reconstructions", []).append(label)
        if "sample" in have:
            gen = torch.Generator(device=run.data.device).manual_seed(seed)
            samples.append(sample_from(run.model, n, gen).float().clamp(0, 1).cpu())
            done.rows.setdefault("samples", []).append(label)
    for kind, rows in (("reconstructions", recon), ("samples", samples)):
        if len(rows) > (2 if kind == "reconstructions" else 1):  # two models at least
            shapes = {tuple(r.shape[1:]) for r in rows}
            if len(shapes) == 1:
                done.images[kind] = save_png_grid(torch.cat(rows), Path(out_dir) / f"across_{kind}.png", n)
    return done
