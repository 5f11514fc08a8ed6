"""Reference statistics: the real feature sets the sample metrics compare with, computed
once by ``genbench stats`` and then read instead of recomputed, sharable as one file.

A reference set is the features (and logits) of a fixed subset of a real split (the first
``n`` of a fixed permutation, :func:`features.fixed_subset`), with their mean and
covariance in float64 (the FID statistics). It is keyed by everything that decides the
numbers: dataset, split, variant, the subset, the preprocessing, the extractor's
``feature_space`` (its name and weights' hash) and the SHA-1 of the split's images. A file
whose key differs from what a metric would compute is never used, and refused with the
field that differs when given by hand (``--reference-stats``): clean-fid's lesson is that
resizing alone moves FID by several points.

The features are computed by the very call :func:`quality.real_features` makes, so a
cached set is bit-identical to a recomputed one and cached or not, every number is the
same. Runs read the cache too; only ``genbench stats`` writes it. A file is an ``.npz``
(``features``, ``logits``, ``mu``, ``sigma``, ``key`` as JSON): numpy reads it without
pickle, and ``mu``/``sigma`` are where pytorch-fid's statistics files keep theirs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genbench.errors import GenbenchError
from genbench.metrics.features import SUBSET_SEED, Extractor, default_cache_dir

STATS_DIR = "stats"
FORMAT = "genbench-reference-stats-1"
# the key fields that decide the numbers (the dataset and split names are for people)
_IDENTITY = ("format", "variant", "n", "subset", "preprocessing", "feature_space", "data")


@dataclass
class ReferenceSet:
    key: dict[str, Any]
    features: torch.Tensor  # (n, D) as the extractor returned them
    logits: torch.Tensor  # (n, K)
    mu: torch.Tensor  # (D,) float64
    sigma: torch.Tensor  # (D, D) float64, unbiased


def data_sha1(x: torch.Tensor) -> str:
    h = hashlib.sha1(f"{x.dtype}{tuple(x.shape)}".encode())
    h.update(x.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def set_key(extractor: Extractor, x: torch.Tensor, variant: str, n: int, *,
            dataset: str | None = None, split: str | None = None) -> dict[str, Any]:
    """What the features of the first ``n`` of a fixed permutation of ``x`` depend on."""
    return {"format": FORMAT, "dataset": dataset, "split": split, "variant": variant,
            "n": min(n, x.shape[0]),
            "subset": f"first n of a fixed permutation (seed {SUBSET_SEED}) of {x.shape[0]} images",
            "preprocessing": extractor.preprocessing, "feature_space": extractor.feature_space,
            "data": data_sha1(x)}


def cache_path(key: dict[str, Any], cache_dir: Path | None = None) -> Path:
    digest = hashlib.sha1(json.dumps({k: key[k] for k in _IDENTITY}, sort_keys=True).encode())
    space = str(key["feature_space"]).replace(":", "-").replace("/", "-")
    return Path(cache_dir or default_cache_dir()) / STATS_DIR / f"{space}-{digest.hexdigest()[:16]}.npz"


def mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from genbench.metrics.frechet import fid_features_to_statistics

    return fid_features_to_statistics(features).mean_cov()


def save(ref: ReferenceSet, path: Path) -> None:
    import io

    import numpy as np

    from genbench import store

    buf = io.BytesIO()
    np.savez(buf, features=ref.features.cpu().numpy(), logits=ref.logits.cpu().numpy(),
             mu=ref.mu.cpu().numpy(), sigma=ref.sigma.cpu().numpy(),
             key=np.array(json.dumps(ref.key, sort_keys=True)))
    store.atomic_write_bytes(Path(path), buf.getvalue())


def load(path: Path) -> ReferenceSet | dict[str, torch.Tensor]:
    """A genbench reference set, or {"mu", "sigma"} of a statistics file without a key
    (pytorch-fid's); anything else is one line."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except FileNotFoundError:
        raise GenbenchError(f"no reference statistics at {path}; make them with "
                            "`genbench stats DATASET --out FILE`") from None
    except Exception as err:  # noqa: BLE001  (corrupt, pickled, not an npz)
        raise GenbenchError(f"{path} is not a statistics .npz ({type(err).__name__}); make one "
                            "with `genbench stats DATASET --out FILE`") from None
    if "key" not in arrays:
        if {"mu", "sigma"} <= set(arrays):
            return {k: torch.from_numpy(np.asarray(arrays[k], dtype=np.float64)) for k in ("mu", "sigma")}
        raise GenbenchError(f"{path} holds neither genbench reference statistics nor mu and "
                            f"sigma (it holds {', '.join(sorted(arrays)) or 'nothing'})")
    key = json.loads(str(arrays["key"]))
    if key.get("format") != FORMAT:
        raise GenbenchError(f"{path} is in format {key.get('format')!r}, not {FORMAT!r}; remake it "
                            "with `genbench stats`")
    return ReferenceSet(key, torch.from_numpy(arrays["features"]), torch.from_numpy(arrays["logits"]),
                        torch.from_numpy(arrays["mu"]), torch.from_numpy(arrays["sigma"]))


def mismatch(found: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """Why a set keyed ``found`` cannot stand for one keyed ``wanted`` (None: it can)."""
    names = {"split": "split", "dataset": "dataset", "variant": "data variant",
             "preprocessing": "preprocessing", "feature_space": "feature space",
             "n": "number of images", "subset": "subset", "data": "images (SHA-1)"}
    for field, what in names.items():
        if field in ("dataset", "split") and None in (found.get(field), wanted.get(field)):
            continue
        if found.get(field) != wanted.get(field):
            return (f"its {what} is {found.get(field)!r}, these samples are compared with "
                    f"{wanted.get(field)!r}")
    return None


def cached(extractor: Extractor, x: torch.Tensor, variant: str, n: int
           ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(features, logits) of the subset from the cache, or None (never computes)."""
    folder = default_cache_dir() / STATS_DIR
    if not folder.is_dir():  # nothing cached: no hashing either
        return None
    key = set_key(extractor, x, variant, n)
    path = cache_path(key)
    if not path.exists():
        return None
    try:
        ref = load(path)
    except GenbenchError:
        return None  # a damaged cache entry is ignored (it is only a cache)
    if not isinstance(ref, ReferenceSet) or mismatch(ref.key, key) is not None:
        return None
    return ref.features.to(x.device), ref.logits.to(x.device)


def store_in_cache(ref: ReferenceSet) -> Path:
    path = cache_path(ref.key)
    save(ref, path)
    return path


def metric_sets(data: Any, n_quality: int) -> list[tuple[str, int]]:
    """The (split, n) real sets the sample metrics read at ``n_quality``: the test reference
    (quality, modes, memorization), the floor's training subset, and every training image
    (memorization). A test checks that with these cached an evaluation computes none."""
    return [("test", min(n_quality, len(data.test))), ("train", min(n_quality, len(data.train))),
            ("train", len(data.train))]


def reference_key(extractor: Extractor, data: Any, n_quality: int) -> dict[str, Any]:
    """The key of the test reference the sample metrics compare samples with."""
    split, n = metric_sets(data, n_quality)[0]
    return set_key(extractor, data.test.x, data.info.variant, n, dataset=data.info.name, split=split)
