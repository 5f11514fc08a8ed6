"""LAPGAN's pyramid (Denton et al. 2015, Fig. 1): a sample built up level by level.

Each row is one sample: the coarsest generated image, then for every finer level the
generated band-pass residual and the sum so far (upsampled coarser image + residual), all
enlarged to the final size. Residuals are signed; they are shown around grey (0.5) scaled by
the row's largest magnitude, so their structure is visible whatever their size.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from genbench.contract import draw
from genbench.galleries.core import NotApplicable, register_gallery
from genbench.galleries.sweeps import labelled_grid, save_image
from genbench.loading import LoadedRun


@register_gallery("pyramid", needs=frozenset({"prior", "generate"}),
                  description="LAPGAN samples built coarse to fine: the coarse image, then each "
                              "level's residual (grey = 0) and the sum so far.")
@torch.no_grad()
def pyramid(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 6) -> Path:
    model = run.model
    if not callable(getattr(model, "levels", None)):
        raise NotApplicable("only a pyramid model (lapgan) builds its images level by level")
    z = draw(model.prior(), n, generator)
    parts = model.levels(z)  # [(low, residual, image)] coarse to fine, in [-1, 1]
    size = parts[-1][2].shape[-1]

    def big(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t, size=(size, size), mode="nearest")

    columns, headers = [big((parts[0][2] + 1) / 2)], [f"{parts[0][2].shape[-1]}px"]
    for _, h, image in parts[1:]:
        scale = h.abs().flatten(1).amax(1).clamp_min(1e-6)[:, None, None, None]
        columns += [big(0.5 + 0.5 * h / scale), big((image + 1) / 2)]
        headers += [f"h {h.shape[-1]}", f"{image.shape[-1]}px"]
    tiles = torch.stack([c.clamp(0, 1) for c in columns], 1)  # (N, K, C, H, W)
    return save_image(labelled_grid(tiles, None, headers, scale=2 if size <= 32 else 1), out_path)
