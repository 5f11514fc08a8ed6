"""Image completions of an autoregressive model (van den Oord et al. 2016, Fig. 1 and 6 of
"Pixel Recurrent Neural Networks"): the top rows of test images given, the rest sampled."""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.galleries.core import NotApplicable, register_gallery, save_png_grid, test_images
from genbench.loading import LoadedRun
from genbench.metrics.sampling import labels_for


def _caption(run: LoadedRun) -> str:
    return ("Completions: each row one test image; first column its top half (bottom grey), "
            "then samples of the bottom half given the top, last column the original.")


@register_gallery("completions", needs=frozenset({"exact", "sample"}),
                  description="Completions: the top half of test images given, the bottom half "
                              "sampled pixel by pixel.", caption=_caption)
@torch.no_grad()
def completions(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 8,
                samples: int = 6) -> Path:
    """``n`` test images, ``samples`` completions each; a model needs ``complete(x, rows, ...)``."""
    model = run.model
    if not callable(getattr(model, "complete", None)):
        raise NotApplicable(f"{run.config['model']} has no complete(x, rows, generator) to "
                            "sample the bottom half given the top")
    x, y = test_images(run, n)
    y = labels_for(model, y)
    rows = x.shape[2] // 2
    reps = x.repeat_interleave(samples, 0)  # (n * samples, C, H, W), image by image
    y_rep = None if y is None else y.repeat_interleave(samples, 0)
    filled = (model.complete(reps, rows, generator) if y_rep is None else
              model.complete(reps, rows, generator, y=y_rep)).clamp(0, 1)
    given = x.clone()
    given[:, :, rows:] = 0.5  # the part the model does not see
    grid = torch.cat([given[:, None], filled.view(n, samples, *x.shape[1:]), x[:, None]], 1)
    return save_png_grid(grid.flatten(0, 1), out_path, samples + 2)
