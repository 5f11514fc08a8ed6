"""Matplotlib figures to small PNGs: shared by the report's plots and the galleries' scatter."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
from matplotlib import pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402


def save_figure(fig: plt.Figure, path: Path, *, dpi: int = 72, tight: bool = True) -> Path:
    """Save as a palette PNG (a quarter of the bytes of RGBA for flat plots); closes ``fig``.

    ``tight=False`` for a figure already laid out by ``tight_layout`` (a second layout pass
    is most of the cost of a many-panel figure).
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    plt.close(fig)
    buf.seek(0)
    from genbench.store import atomic_write_bytes

    png = io.BytesIO()
    Image.open(buf).convert("RGB").quantize(colors=256).save(png, format="PNG", optimize=True)
    atomic_write_bytes(path, png.getvalue())  # a reader never sees half a file
    return path
