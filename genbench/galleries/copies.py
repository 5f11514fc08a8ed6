"""The model samples most like a training image, beside that image (memorization, by eye).

In the evaluator's feature space (the one FID and ``copied_fraction`` use), each of ``pool``
samples is matched with its nearest training image and scored by how much closer it is than
that image's own nearest other training image (Alaa et al. 2022); the closest pairs are
shown, sample left, training image right. Identical pairs mean the model copies its data.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.contract import sample_from
from genbench.galleries.core import register_gallery, save_png_grid
from genbench.loading import LoadedRun
from genbench.metrics.features import default_cache_dir, get_extractor, mean_images
from genbench.metrics.memorization import nearest


@register_gallery("copies", needs=frozenset({"sample"}),
                  description="Samples closest to a training image (left of each pair) beside that "
                              "image, closest first, in the evaluator's features (Alaa et al. 2022).")
def copies(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 8, pool: int = 512
           ) -> Path:
    """n rows of n/2 (sample, nearest training image) pairs, most copy-like first."""
    p, data = run.preset, run.data
    with torch.random.fork_rng(devices=[]):  # training it (if not cached) leaves the global RNG alone
        ext = get_extractor(data, kind=getattr(p, "feature_extractor", "classifier"),
                            epochs=p.feature_epochs, cache_dir=default_cache_dir(),
                            inception_weights=getattr(p, "inception_weights", None))
    with torch.no_grad():  # the extractor above may need to train first (with gradients)
        return _pairs(run, ext, out_path, generator, n, pool)


def _pairs(run: LoadedRun, ext, out_path: Path, generator: torch.Generator, n: int, pool: int) -> Path:
    data = run.data
    train = mean_images(data.train.x, data.info.variant)
    train_f = ext(train, 500)[0]
    samples = sample_from(run.model, pool, generator).float().clamp(0, 1)
    d, j = nearest(ext(samples, 500)[0], train_f)
    hit, where = torch.unique(j, return_inverse=True)
    radius, _ = nearest(train_f[hit], train_f, self_index=hit)
    order = (d / radius[where].clamp_min(1e-12)).argsort()[: n * (n // 2)]
    tiles = torch.stack([samples[order].cpu(), train[j[order]].float().cpu()], 1).flatten(0, 1)
    return save_png_grid(tiles, out_path, n)
