"""Galleries decoded from a run's checkpoint: samples, reconstructions, interpolation,
latent arithmetic, the 2-D manifold, a latent scatter and (conditional models) analogies.

Each ``*_images`` function returns the images of one gallery, (N, C, H, W) in [0, 1], and
the row length; :func:`write_gallery` turns any of them into a PNG with torchvision's
make_grid. Nothing here trains: the model comes from ``checkpoint.pt`` via
:func:`genbench.evaluation.load_run`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.utils import make_grid

from genbench.contract import has_density_encoder
from genbench.errors import GenbenchError
from genbench.evaluation import LoadedRun, load_run
from genbench.images import reconstruct
from genbench.metrics.sampling import encode, generate, labels_for
from genbench.report import latent
from genbench.store import METRICS, read_json

KINDS = ("samples", "reconstructions", "interpolation", "arithmetic", "manifold", "scatter",
         "analogies")
# The seed's CelebA edits (attribute, strength in prior standard deviations).
CELEBA_EDITS = (("Smiling", 3.0), ("Male", 3.0), ("Young", -5.0), ("Mustache", 5.0),
                ("Eyeglasses", 1.0))
N_STATS = 1000  # test images encoded for class/attribute means


@dataclass(frozen=True)
class GalleryOptions:
    n: int = 8  # images per row (samples, reconstructions) or rows (arithmetic)
    endpoints: tuple[int, ...] = ()  # test-image indices, in pairs; (): 4 pairs of different classes
    steps: int = 10  # interpolation steps, endpoints included
    modes: tuple[str, ...] = latent.MODES  # interpolation: linear and/or slerp
    target: str | None = None  # arithmetic: a class (e.g. "7") or attribute name
    strength: float | None = None  # arithmetic: multiple of the vector (None: 1, or the seed's edit)
    manifold_n: int = 20  # the manifold's grid is manifold_n x manifold_n
    seed: int = 0
    feature_space: str | None = None  # the evaluator that labels a GAN's samples (from metrics.json)


def has_encoder(model: torch.nn.Module) -> bool:
    return callable(getattr(model, "encode", None))


def display_order(y: torch.Tensor | None, size: int) -> torch.Tensor:
    """Test indices in the order galleries use them: classes interleaved (0, 1, ..., 9, 0, ...).

    Test splits are often sorted by class, so "the first 16 test images" can all be zeros and
    class means from "the first 500" can miss most classes. Without class labels: a fixed
    random permutation.
    """
    if y is None or y.dim() != 1:
        return torch.randperm(size, generator=torch.Generator().manual_seed(0))
    y = y.cpu()
    rank = torch.zeros_like(y)  # position of each image within its class
    for k in y.unique():
        members = (y == k).nonzero().flatten()
        rank[members] = torch.arange(len(members))
    return torch.argsort(rank * (int(y.max()) + 1) + y, stable=True)  # by (rank, class)


def test_images(run: LoadedRun, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``n`` test images (and labels) in :func:`display_order`, as models are scored on them."""
    x, y = run.data.eval_x("test"), run.data.eval_y("test")
    idx = display_order(y, len(x))[:n].to(x.device)
    return x[idx], None if y is None else y[idx]


@torch.no_grad()
def codes(run: LoadedRun, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The encoder's mean code for each image (N, D): the code a reconstruction decodes."""
    return encode(run.model, x, labels_for(run.model, y)).mean


@torch.no_grad()
def decode_mean(run: LoadedRun, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    return generate(run.model, z, labels_for(run.model, y)).clamp(0, 1)


@torch.no_grad()
def samples_images(run: LoadedRun, opts: GalleryOptions) -> tuple[torch.Tensor, int]:
    gen = torch.Generator(device=run.data.device).manual_seed(opts.seed)
    return run.model.sample(opts.n * opts.n, generator=gen).clamp(0, 1), opts.n


def reconstructions_images(run: LoadedRun, opts: GalleryOptions) -> tuple[torch.Tensor, int]:
    """Inputs above their reconstructions (the encoder's mean code, decoded)."""
    if not has_encoder(run.model):
        raise GenbenchError(f"{run.config['model']} has no encoder, so no reconstructions; "
                            "try --kind samples or interpolation")
    x, y = test_images(run, opts.n * 2)
    r = reconstruct(run.model, x, labels_for(run.model, y)).clamp(0, 1)
    rows = [t for i in range(0, len(x), opts.n) for t in (x[i:i + opts.n], r[i:i + opts.n])]
    return torch.cat(rows), opts.n


def _pairs(run: LoadedRun, endpoints: tuple[int, ...]) -> tuple[list[int], list[int]]:
    idx = list(endpoints) or display_order(run.data.eval_y("test"), len(run.data.test))[:8].tolist()
    if len(idx) % 2:
        raise GenbenchError(f"--endpoints takes pairs of test-image indices; got {len(idx)} numbers")
    size = len(run.data.test)
    if bad := [i for i in idx if not 0 <= i < size]:
        raise GenbenchError(f"test-image index {bad[0]} is out of range 0..{size - 1}")
    return idx[0::2], idx[1::2]


@torch.no_grad()
def endpoint_codes(run: LoadedRun, opts: GalleryOptions
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(z0, z1, labels): encoded test images with an encoder, prior draws otherwise."""
    a, b = _pairs(run, opts.endpoints)
    x, y = run.data.eval_x("test"), run.data.eval_y("test")
    ya = None if y is None else y[a]
    if has_encoder(run.model):
        yb = None if y is None else y[b]
        return codes(run, x[a], ya), codes(run, x[b], yb), ya
    prior = run.model.prior()
    torch.manual_seed(opts.seed)
    z = prior.sample((2 * len(a),))
    return z[: len(a)], z[len(a):], ya


def interpolation_images(run: LoadedRun, opts: GalleryOptions) -> tuple[torch.Tensor, int]:
    """One row per endpoint pair and mode (linear above slerp); end columns = reconstructions."""
    z0, z1, y = endpoint_codes(run, opts)
    rows = []
    for i in range(z0.shape[0]):
        for mode in opts.modes:
            path = latent.interpolate(z0[i:i + 1], z1[i:i + 1], opts.steps, mode)[0]  # (steps, D)
            yi = None if y is None else y[i:i + 1].expand(opts.steps, *y.shape[1:])
            rows.append(decode_mean(run, path, yi))
    return torch.cat(rows), opts.steps


def save_png_grid(images: torch.Tensor, path: Path, nrow: int) -> Path:
    """(N, C, H, W) in [0, 1] -> a PNG grid; grey grids are saved with one channel (a third of the bytes)."""
    grid = make_grid(images.detach().float().clamp(0, 1).cpu(), nrow=nrow, padding=2, pad_value=1.0)
    array = (grid * 255).round().to(torch.uint8)  # (3, H, W); make_grid repeats a grey channel
    grey = bool((array == array[:1]).all())
    img = Image.fromarray(array[0].numpy() if grey else array.permute(1, 2, 0).numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    return path


def write_gallery(run_dir: Path, kind: str, out: Path | None = None,
                  opts: GalleryOptions | None = None) -> Path:
    """Decode one gallery of ``run_dir`` to a PNG (default ``<run_dir>/gallery_<kind>.png``)."""
    if kind not in KINDS:
        raise GenbenchError(f"unknown gallery kind {kind!r}; use one of {', '.join(KINDS)}")
    run = load_run(Path(run_dir))
    space = read_json(Path(run_dir) / METRICS).get("feature_space")
    opts = dataclasses.replace(opts or GalleryOptions(), feature_space=space)
    return render(run, kind, Path(out or Path(run_dir) / f"gallery_{kind}.png"), opts)


def render(run: LoadedRun, kind: str, path: Path, opts: GalleryOptions) -> Path:
    """Write one gallery of a loaded run to ``path``."""
    from genbench.report import arithmetic

    if kind == "scatter":
        return arithmetic.latent_scatter(run, path)
    if kind == "analogies":
        images, nrow = arithmetic.analogies_images(run, opts)
    else:
        fn = {"samples": samples_images, "reconstructions": reconstructions_images,
              "interpolation": interpolation_images, "arithmetic": arithmetic.arithmetic_images,
              "manifold": arithmetic.manifold_images}[kind]
        images, nrow = fn(run, opts)
    return save_png_grid(images, path, nrow)


def density_note(run: LoadedRun) -> str:
    """How interpolation endpoints were chosen, for a caption."""
    if has_encoder(run.model):
        kind = "posterior means" if has_density_encoder(run.model) else "codes"
        return f"between the encoder's {kind} of test images (end columns = their reconstructions)"
    return "between draws from the prior (no encoder)"
