"""The real-versus-real floor of each sample-quality metric, wherever it was stored.

Two places are read: keys ``floor_<metric>`` in a run's metrics.json (exact for that run's
sample counts), and the per-dataset floor files of :mod:`genbench.metrics.floor`
(``<results>/<dataset>/_floor/*.json``) for runs evaluated before the keys were copied.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from genbench.report import tables


def floor_values(runs: pd.DataFrame, results: Path, dataset: str, variant: str,
                 space: str | None) -> dict[str, float]:
    """metric -> floor value for this dataset, variant and feature space ({} when none was stored)."""
    values = stored_floor(results, dataset, variant, space)
    values.update(tables.floor_from_metrics(tables.finished(runs)))
    return values


def stored_floor(results: Path, dataset: str, variant: str, space: str | None) -> dict[str, float]:
    """The floor file of this dataset, variant and feature space, when exactly one matches.

    Several files (different sample counts, i.e. presets) are ambiguous; then the runs'
    own ``floor_*`` keys decide.
    """
    try:
        from genbench.metrics.floor import read_floors
    except ImportError:
        return {}
    found = [f for f in read_floors(Path(results), dataset)
             if f.get("variant") == variant and f.get("feature_space") == space]
    if len(found) != 1:
        return {}
    return {k[len("floor_"):]: float(v) for k, v in found[0].items()
            if k.startswith("floor_") and isinstance(v, int | float)}
