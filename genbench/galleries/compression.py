"""The deck's compression slide (Gregor et al. 2016, Fig. 5): test images, the model's
reconstruction from the latents it would send, and JPEG and JPEG 2000 at the same bits."""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.galleries.core import register_gallery, save_png_grid, test_images
from genbench.loading import LoadedRun
from genbench.metrics.compression import (
    CODECS,
    DECK_FRACTION,
    codec_table,
    match,
    model_curve,
    raw_bits,
)
from genbench.metrics.sampling import labels_for, seed_from


def step_within(mean_bits: torch.Tensor, budget: float) -> int:
    """The last step (0-based) whose mean rate fits in ``budget`` bits, else the first."""
    fits = (mean_bits <= budget).nonzero()
    return int(fits[-1]) if len(fits) else 0


def _caption(run: LoadedRun) -> str:
    return (f"Compression, rows top to bottom: test images; {run.config['model']} decoded from the "
            f"latents of the last step within {DECK_FRACTION:.0%} of the raw size (its bits-back "
            "rate); JPEG and JPEG 2000 files of each image at no more than the model's bits for it "
            "where such a file exists, else the smallest file (see the compression table for the bits).")


@register_gallery("compression", needs=frozenset({"encode", "generate", "prior", "density_encoder"}),
                  description="The deck's slide: test images, the model's reconstruction at its "
                              "step within 20% of the raw size, JPEG and JPEG 2000 at the model's "
                              "bits (one method a row).",
                  caption=_caption)
@torch.no_grad()
def compression(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 8) -> Path:
    x, y = test_images(run, n)
    bits, means = model_curve(run.model, x, labels_for(run.model, y), seed=seed_from(generator))
    binarized = run.data.info.observation == "bernoulli"
    t = step_within(bits.double().mean(1), DECK_FRACTION * raw_bits(x, binarized))
    rows = [x, means[t]] + [match(codec_table(x, codec), x, bits[t])[1] for codec in CODECS]
    return save_png_grid(torch.cat([r.to(x.device, x.dtype) for r in rows]), out_path, x.shape[0])
