"""Sweeps of ``synthetic-3d``: renderings in which one thing varies, for DC-IGN's clamped batches.

DC-IGN (Kulkarni et al. 2015) trains on mini-batches in which one factor varies and the object
and every other factor are fixed; the sampled splits of :mod:`genbench.data.render3d` have no
such batches. :func:`sweep_set` renders them once: ``bases`` draws of (object, factors) with
``SWEEP_SEED``, each swept along every factor over ``length`` evenly spaced values of its
range (the rest of the draw kept), plus one "object" sweep per draw (the three objects under
the draw's factors, the intrinsic batches). The set is a deterministic function of
(bases, length, seed) and of the renderer, and is cached beside the splits under
``<cache>/render3d/sweeps-<renderer hash>-<this module's hash>-<size>-<bases>-<length>-<seed>.pt``.

It lives outside ``render3d.py`` because that module's whole source keys the splits' cache:
adding the sweeps there would have rendered the 6,000 images again for everyone.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import torch

from genbench.data import render3d
from genbench.data.render3d import FACTORS, OBJECTS, RANGES

SWEEP_SEED = 11  # the base draws' seed (not the splits')
VARIED = (*FACTORS, "object")  # what one sweep varies: a factor, or the object (intrinsic)


def sweep_factors(bases: int, length: int, seed: int = SWEEP_SEED
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(objects (N,), factors (N, 3), sweep id (N,), varied (S,)) of the sweep set.

    ``varied[s]`` indexes :data:`VARIED`: the one thing sweep s changes. Images of a sweep
    are contiguous; N = bases * (3 * length + 3).
    """
    base_obj, base_fac = render3d.sample_factors(bases, seed)
    objects, factors, varied = [], [], []
    for b in range(bases):
        for j, name in enumerate(FACTORS):
            f = np.repeat(base_fac[b][None], length, 0)
            f[:, j] = np.linspace(*RANGES[name], length)
            objects.append(np.full(length, base_obj[b]))
            factors.append(f)
            varied.append(j)
        objects.append(np.arange(len(OBJECTS)))
        factors.append(np.repeat(base_fac[b][None], len(OBJECTS), 0))
        varied.append(len(FACTORS))
    sweep = [np.full(len(o), s) for s, o in enumerate(objects)]
    return (np.concatenate(objects).astype(np.int64), np.concatenate(factors),
            np.concatenate(sweep).astype(np.int64), np.asarray(varied, dtype=np.int64))


CODE_HASH = hashlib.sha1(inspect.getsource(sweep_factors).encode()).hexdigest()[:8]


def sweep_set(bases: int, length: int, seed: int = SWEEP_SEED, size: int = render3d.SIZE,
              cache: Path | None = None) -> dict[str, torch.Tensor]:
    """The rendered, cached sweep set: ``x`` (N, 1, size, size) uint8, ``y`` objects (N,),
    ``measures`` factors (N, 3) float, ``sweep`` (N,) sweep ids, ``varied`` (S,).

    dcign's quick set, 96 draws of 12 values (3,744 images), took 21 s to render on one core
    of a 2-core machine at a load of about 4; a cached load takes 2 ms.
    """
    from genbench import store

    name = f"sweeps-{render3d.CODE_HASH}-{CODE_HASH}-{size}-{bases}-{length}-{seed}.pt"
    path = Path(cache or store.cache_root()) / "render3d" / name
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # an unreadable cache file is rendered again
            pass
    objects, factors, sweep, varied = sweep_factors(bases, length, seed)
    sets = {"x": torch.from_numpy(render3d.render_set(objects, factors, size))[:, None],
            "y": torch.from_numpy(objects), "measures": torch.from_numpy(factors).float(),
            "sweep": torch.from_numpy(sweep), "varied": torch.from_numpy(varied)}
    store.save_torch(path, sets)
    return sets
