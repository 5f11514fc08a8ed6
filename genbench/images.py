"""Image grids written with torchvision's make_grid/save_image (atomically)."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from genbench.contract import generate_from
from genbench.store import atomic_write_bytes


def save_grid(x: torch.Tensor, path: Path, nrow: int = 8) -> None:
    """x (N, C, H, W) in [0, 1] -> PNG grid."""
    buf = io.BytesIO()
    save_image(make_grid(x.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2), buf,
               format="png")
    atomic_write_bytes(Path(path), buf.getvalue())


@torch.no_grad()
def reconstruct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """The decoded mean of the encoder's mean code (conditional models get ``y``)."""
    cond = {"y": y} if y is not None and getattr(model, "conditional", False) else {}
    z = model.encode(x, **cond).mean
    return generate_from(model, z, y if cond else None)


def save_reconstructions(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                         path: Path, per_row: int = 8) -> None:
    """Inputs above their reconstructions, in pairs of rows."""
    r = reconstruct(model, x, y)
    rows = []
    for i in range(0, x.shape[0], per_row):
        rows += [x[i : i + per_row], r[i : i + per_row]]
    save_grid(torch.cat(rows), path, nrow=per_row)
