"""DRAW's canvas after each step (Gregor et al. 2015, Fig. 7): how a sequential model draws."""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.galleries.core import NotApplicable, register_gallery, save_png_grid, test_images
from genbench.loading import LoadedRun


def _steps_shown(total: int, columns: int) -> torch.Tensor:
    """At most ``columns`` step indices, evenly spaced, the last step always included."""
    if total <= columns:
        return torch.arange(total)
    return torch.linspace(0, total - 1, columns).round().long()


def _need(run: LoadedRun, method: str) -> None:
    if not callable(getattr(run.model, method, None)):
        raise NotApplicable(f"{run.config['model']} has no {method}() giving its canvas per step")


@register_gallery("canvas", needs=frozenset({"importance", "sample"}),
                  description="The canvas after each drawing step while sampling (one sample a "
                              "row, steps left to right).")
@torch.no_grad()
def canvas(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 8,
           columns: int = 16) -> Path:
    _need(run, "sample_steps")
    steps = run.model.sample_steps(n, generator)  # (T, n, C, H, W)
    shown = steps[_steps_shown(steps.shape[0], columns).to(steps.device)]
    return save_png_grid(shown.transpose(0, 1).flatten(0, 1), out_path, shown.shape[0])


@register_gallery("canvas_reconstructions", needs=frozenset({"importance"}),
                  description="The canvas after each drawing step while reconstructing test "
                              "images (one image a row, the input last).")
@torch.no_grad()
def canvas_reconstructions(run: LoadedRun, out_path: Path, *, generator: torch.Generator,
                           n: int = 8, columns: int = 16) -> Path:
    _need(run, "reconstruction_steps")
    x, _ = test_images(run, n)
    steps = run.model.reconstruction_steps(x, generator)  # (T, n, C, H, W)
    shown = steps[_steps_shown(steps.shape[0], columns).to(steps.device)]
    grid = torch.cat([shown.transpose(0, 1), x[:, None]], 1)  # (n, columns + 1, C, H, W)
    return save_png_grid(grid.flatten(0, 1), out_path, grid.shape[1])
