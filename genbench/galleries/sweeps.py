"""Attribute sweeps: one test image per row, one attribute moved left to right (-2 sd .. +2 sd
for a Morpho-MNIST measure, -1 .. +1 for a CelebA attribute), each edit measured again and
the value printed under it: the picture behind the ``edits`` metric.

Edits come from :mod:`genbench.kit.edits` (the model's own hook, CVAE's condition, or latent
arithmetic). Values printed: the Morpho-MNIST measure in its units (slant in degrees) on
``*-morpho`` data; the evaluator's probability of the attribute on CelebA.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

from genbench.data import morpho
from genbench.errors import GenbenchError
from genbench.galleries.core import NotApplicable, display_order, register_gallery
from genbench.kit.edits import dataset_attributes, edit_method, make_editor
from genbench.loading import LoadedRun
from genbench.store import atomic_write_bytes

LABEL_H = 12  # pixels of text under (or above) each tile


def labelled_grid(tiles: torch.Tensor, labels: list[list[str]] | None = None,
                  headers: list[str] | None = None, scale: int = 2, gap: int = 2) -> Image.Image:
    """Tiles (R, K, C, H, W) in [0, 1] as an R x K grid, each tile ``scale`` times larger
    (nearest), with ``labels[r][k]`` printed under tile (r, k) and ``headers[k]`` above
    column k."""
    r, k, c, h, w = tiles.shape
    th, tw = h * scale, w * scale
    below = LABEL_H if labels else 0
    top = LABEL_H if headers else 0
    canvas = Image.new("RGB", (k * (tw + gap) + gap, top + r * (th + below + gap) + gap), "white")
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    big = torch.nn.functional.interpolate(tiles.flatten(0, 1).float().clamp(0, 1), scale_factor=scale,
                                          mode="nearest")  # (R*K, C, th, tw)
    big = (big * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
    for i in range(r):
        for j in range(k):
            x0, y0 = gap + j * (tw + gap), top + gap + i * (th + below + gap)
            tile = Image.fromarray(big[i * k + j].permute(1, 2, 0).cpu().numpy())
            canvas.paste(tile, (x0, y0))
            if labels:
                draw.text((x0 + 1, y0 + th), labels[i][j], fill="black", font=font)
    for j, text in enumerate(headers or []):
        draw.text((gap + j * (tw + gap) + 1, 0), text, fill="black", font=font)
    return canvas


def save_image(img: Image.Image, path: Path) -> Path:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def _fmt(name: str, value: float) -> str:
    if name == "slant":
        return f"{torch.tensor(value).rad2deg().item():.0f}deg"
    return f"{value:.2f}" if name == "thickness" else f"{value:.1f}"


@register_gallery("sweeps", needs=frozenset({"encode"}),
                  description="Attribute sweeps: each row one test image (left) edited from "
                              "-2 sd to +2 sd of one attribute, the measured value under each.")
@torch.no_grad()
def sweeps(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 6,
           steps: int = 5, target: str | None = None, feature_space: str | None = None
           ) -> Path:
    """Rows: test images; columns: the input, then ``steps`` edits from -2 to +2 (sd)."""
    data = run.data
    try:  # data without attributes, or a model that cannot edit: not a sweep's business
        dataset_attributes(data, "train", 1)
        edit_method(run.model)
    except GenbenchError as err:
        raise NotApplicable(str(err)) from None
    if data.measure_names and not set(data.measure_names) <= set(morpho.MEASURES):
        raise NotApplicable("sweeps prints Morpho-MNIST measures; set factors (synthetic-3d) "
                            "are in the factors gallery (--kind factors)")
    editor = make_editor(run.model, data)
    names = editor.attributes.names
    attribute = target or names[0]  # the CLI passes --attribute as target
    editor.attributes.column(attribute)  # an unknown name says which exist
    idx = display_order(data.eval_y("test"), len(data.test))[:n].to(data.device)
    x = data.eval_x("test")[idx]
    y = None if data.test.y is None else data.eval_y("test")[idx]
    m = None if data.test.measures is None else data.test.measures[idx]
    binary = editor.attributes.binary[editor.attributes.column(attribute)]
    deltas = torch.linspace(-1 if binary else -2, 1 if binary else 2, steps).tolist()
    columns = [x] + [editor.edit(x, attribute, d, y=y, measures=m).clamp(0, 1) for d in deltas]
    values = [_measured(run, attribute, binary, c, feature_space) for c in columns]  # (K, N)
    labels = [[_fmt(attribute, float(values[j][i])) for j in range(len(columns))] for i in range(n)]
    unit = "" if binary else " sd"
    headers = ["input"] + [f"{d:+.1f}{unit}" for d in deltas]
    tiles = torch.stack(columns, 1)  # (N, K, C, H, W)
    scale = 2 if x.shape[-1] <= 32 else 1
    return save_image(labelled_grid(tiles, labels, headers, scale=scale), out_path)


def _measured(run: LoadedRun, attribute: str, binary: bool, images: torch.Tensor,
              feature_space: str | None) -> torch.Tensor:
    """The attribute's value on each image: a Morpho measure, or the classifier's probability."""
    if not binary:
        return morpho.measure(images)[:, morpho.MEASURES.index(attribute)]
    from genbench.metrics.features import default_cache_dir, find_extractor

    ext = find_extractor(run.data, feature_space or "", default_cache_dir())
    if ext is None:
        raise GenbenchError("the sweep prints the attribute classifier's probabilities; run "
                            f"`genbench features {run.data.info.name}` first")
    column = list(run.data.info.label_names).index(attribute)
    return torch.sigmoid(ext(images)[1][:, column]).cpu()
