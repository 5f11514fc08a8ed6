"""Samples, reconstructions and latent interpolation."""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.contract import draw, has_density_encoder, sample_from
from genbench.errors import GenbenchError
from genbench.galleries import latent
from genbench.galleries.core import (
    NotApplicable,
    codes,
    decode_mean,
    display_order,
    has_encoder,
    register_gallery,
    save_png_grid,
    test_images,
)
from genbench.images import reconstruct
from genbench.loading import LoadedRun
from genbench.metrics.sampling import labels_for


@register_gallery("samples", needs=frozenset({"sample"}),
                  description="Samples from the prior (fixed noise).")
@torch.no_grad()
def samples(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 8) -> Path:
    """An n x n grid of the model's samples."""
    return save_png_grid(sample_from(run.model, n * n, generator).clamp(0, 1), out_path, n)


@register_gallery("reconstructions", needs=frozenset({"encode", "generate"}),
                  description="Test inputs (odd rows) above their reconstructions (even rows).")
@torch.no_grad()
def reconstructions(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 8
                    ) -> Path:
    """Inputs above their reconstructions (the encoder's mean code, decoded). No randomness."""
    x, y = test_images(run, n * 2)
    r = reconstruct(run.model, x, labels_for(run.model, y)).clamp(0, 1)
    rows = [t for i in range(0, len(x), n) for t in (x[i:i + n], r[i:i + n])]
    return save_png_grid(torch.cat(rows), out_path, n)


def pairs(run: LoadedRun, endpoints: tuple[int, ...]) -> tuple[list[int], list[int]]:
    idx = list(endpoints) or display_order(run.data.eval_y("test"), len(run.data.test))[:8].tolist()
    if len(idx) % 2:
        raise GenbenchError(f"--endpoints takes pairs of test-image indices; got {len(idx)} numbers")
    size = len(run.data.test)
    if bad := [i for i in idx if not 0 <= i < size]:
        raise GenbenchError(f"test-image index {bad[0]} is out of range 0..{size - 1}")
    return idx[0::2], idx[1::2]


@torch.no_grad()
def endpoint_codes(run: LoadedRun, endpoints: tuple[int, ...], generator: torch.Generator
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(z0, z1, labels): encoded test images with an encoder, prior draws otherwise."""
    a, b = pairs(run, endpoints)
    x, y = run.data.eval_x("test"), run.data.eval_y("test")
    ya = None if y is None else y[a]
    if has_encoder(run.model):
        yb = None if y is None else y[b]
        return codes(run, x[a], ya), codes(run, x[b], yb), ya
    if not callable(getattr(run.model, "prior", None)):
        raise NotApplicable(f"{run.config['model']} has neither an encoder nor a prior, so no "
                            "codes to interpolate between")
    z = draw(run.model.prior(), 2 * len(a), generator)
    return z[: len(a)], z[len(a):], ya


def density_note(run: LoadedRun) -> str:
    """How interpolation endpoints were chosen, for a caption."""
    if has_encoder(run.model):
        kind = "posterior means" if has_density_encoder(run.model) else "codes"
        return f"between the encoder's {kind} of test images (end columns = their reconstructions)"
    return "between draws from the prior (no encoder)"


@register_gallery("interpolation", needs=frozenset({"generate"}),
                  description="Latent interpolation between encoded test images (or prior draws); "
                              "linear above spherical (slerp).",
                  caption=lambda run: f"Latent interpolation {density_note(run)}; in each pair of "
                                      "rows linear above spherical (slerp).")
@torch.no_grad()
def interpolation(run: LoadedRun, out_path: Path, *, generator: torch.Generator,
                  endpoints: tuple[int, ...] = (), steps: int = 10,
                  modes: tuple[str, ...] = latent.MODES) -> Path:
    """One row per endpoint pair and mode (linear above slerp); end columns = reconstructions."""
    images, nrow = interpolation_images(run, generator, endpoints, steps, modes)
    return save_png_grid(images, out_path, nrow)


def interpolation_images(run: LoadedRun, generator: torch.Generator, endpoints: tuple[int, ...] = (),
                         steps: int = 10, modes: tuple[str, ...] = latent.MODES
                         ) -> tuple[torch.Tensor, int]:
    """The interpolation grid's images (rows * steps, C, H, W) and its row length."""
    z0, z1, y = endpoint_codes(run, endpoints, generator)
    rows = []
    for i in range(z0.shape[0]):
        for mode in modes:
            path = latent.interpolate(z0[i:i + 1], z1[i:i + 1], steps, mode)[0]  # (steps, D)
            yi = None if y is None else y[i:i + 1].expand(steps, *y.shape[1:])
            rows.append(decode_mean(run, path, yi))
    return torch.cat(rows), steps
