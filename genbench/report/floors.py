"""The real-versus-real floor of each sample-quality metric, wherever it was stored.

Two places are read, so the report works whichever the sample-quality code writes: keys
``floor_<metric>`` in a run's metrics.json, and the per-dataset floor store of
:mod:`genbench.metrics.floor` (when that module offers a loader).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genbench.report import tables


def floor_values(runs: pd.DataFrame, results: Path, dataset: str, space: str | None) -> dict[str, float]:
    """metric -> floor value for this dataset and feature space ({} when none was stored)."""
    values = stored_floor(results, dataset, space)
    values.update(tables.floor_from_metrics(tables.finished(runs)))
    return values


def stored_floor(results: Path, dataset: str, space: str | None) -> dict[str, float]:
    try:
        from genbench.metrics import floor
    except ImportError:
        return {}
    loader = getattr(floor, "load_floor", None)
    if loader is None or space is None:
        return {}
    try:
        found = loader(Path(results), dataset, space)
    except (OSError, ValueError, KeyError):
        return {}
    return {k: float(v) for k, v in (found or {}).items() if isinstance(v, int | float)}
