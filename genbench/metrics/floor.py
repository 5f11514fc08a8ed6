"""The real-versus-real floor: every sample-quality metric for real data against real data.

A model's samples are compared with a fixed reference set of test images; the floor
compares a fixed subset of *training* images with the same reference, with as many
training images as the model draws samples (capped at the training split's size) and the
same KID subsets. FID and KID are biased by the sample count, so the floor is the best
value the metric can show at this count: a model that had memorised its training data
would score it. Every model's numbers are shown beside it.

Where it is stored: once per (dataset, variant, feature space, counts), at

    <results_root>/<dataset>/_floor/<variant>-<feature space>-<counts>.json

beside the runs it qualifies, so the report (which reads only the store) can show it; when
there is no results root, under ``<cache_dir>/floors/<dataset>/`` instead. ``_floor`` sits
at the depth of a model folder and holds no ``config.json``, so it is never taken for a
run. The file holds the ``floor_*`` values and how they were computed. The values do not
depend on the run's seed (fixed subsets, fixed KID seed), so one file serves every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genbench import store

FLOOR_DIR = "_floor"
FLOOR_SEED = 0  # KID subsets of the floor: fixed, so the floor is shared by every run


def floor_path(*, dataset: str, variant: str, feature_space: str, counts: str,
               results_root: Path | None, cache_dir: Path) -> Path:
    """Where the floor for this dataset, variant, extractor and sample counts lives."""
    safe = feature_space.replace(":", "-").replace("/", "-")
    name = f"{variant}-{safe}-{counts}.json"
    if results_root is not None:
        return Path(results_root) / dataset / FLOOR_DIR / name
    return Path(cache_dir) / "floors" / dataset / name


def load_or_compute_floor(path: Path, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The stored floor at ``path``, or ``compute()`` stored there (atomically) first."""
    if path.exists():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            pass  # a damaged file is recomputed
    floor = compute()
    store.write_json(path, floor)
    return floor


def read_floors(results_root: Path, dataset: str) -> list[dict[str, Any]]:
    """Every stored floor of ``dataset`` (for the report), each with its file name."""
    folder = Path(results_root) / dataset / FLOOR_DIR
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            out.append({**json.loads(path.read_text()), "file": path.name})
        except json.JSONDecodeError:
            continue
    return out
