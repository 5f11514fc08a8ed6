"""Training progress from the runner's fixed-noise grids (``samples/epoch_XXX.png``).

The same noise decoded after each epoch shows a model learning (or a GAN collapsing). The
report stacks the top rows of a few evenly spaced epochs into one image; it reads only
the store, so a run without a checkpoint still gets it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

GRID_COLUMNS, PAD, LABEL_WIDTH = 8, 2, 44  # the runner's grids: nrow=8, padding=2


def pick_epochs(files: list[Path], count: int) -> list[Path]:
    """``count`` files evenly spaced from the first to the last (all of them when fewer)."""
    if len(files) <= count:
        return files
    step = (len(files) - 1) / (count - 1)
    return [files[round(i * step)] for i in range(count)]


def progress_strip(run_dir: Path, out: Path, rows: int = 1, count: int = 6) -> Path | None:
    """Top ``rows`` rows of ``count`` epoch grids, one band per epoch, labelled; None if none."""
    files = sorted((Path(run_dir) / "samples").glob("epoch_*.png"))
    if not files:
        return None
    try:
        png = _strip(files, rows, count)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # damaged or foreign PNG
        import warnings

        from genbench.errors import GenbenchWarning

        warnings.warn(f"{run_dir}/samples holds an unreadable image ({type(err).__name__}: "
                      f"{str(err)[:120]}); its progress strip is left out", GenbenchWarning,
                      stacklevel=2)
        return None
    from genbench.store import atomic_write_bytes

    atomic_write_bytes(out, png)
    return out


def _strip(files: list[Path], rows: int, count: int) -> bytes:
    """The strip as PNG bytes (reading only: a damaged input is the caller's to skip)."""
    first = np.asarray(Image.open(files[0]).convert("RGB"))
    mode = "L" if (first == first[..., :1]).all() else "RGB"  # grey digits: one channel
    bands = []
    for path in pick_epochs(files, count):
        grid = Image.open(path).convert(mode)
        cell = (grid.width - PAD) // GRID_COLUMNS
        bands.append((path.stem.removeprefix("epoch_").lstrip("0") or "0",
                      grid.crop((0, 0, grid.width, min(grid.height, rows * cell + PAD)))))
    width = LABEL_WIDTH + max(b.width for _, b in bands)
    strip = Image.new(mode, (width, sum(b.height for _, b in bands)), color="white")
    draw, y = ImageDraw.Draw(strip), 0
    for epoch, band in bands:
        strip.paste(band, (LABEL_WIDTH, y))
        draw.text((4, y + band.height // 2 - 5), f"ep {epoch}", fill="black")
        y += band.height
    import io

    buf = io.BytesIO()
    strip.save(buf, format="PNG", optimize=True)
    return buf.getvalue()
