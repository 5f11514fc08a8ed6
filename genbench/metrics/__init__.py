"""Benchmark metrics behind a thin registry. Importing this package registers them.

Each registered metric is an adapter ``fn(ctx: EvalContext) -> dict[str, float]`` that
declares the capabilities it needs; the numbers come from pure functions on tensors in the
modules beside it. Models never compute benchmark metrics themselves.
"""

from __future__ import annotations

import importlib

from genbench.metrics.context import EvalContext
from genbench.metrics.runner import evaluate_metrics, requested_metrics

# Each module registers its metrics on import; a module still being written is skipped.
for _module in ("elbo", "likelihood", "exact", "quality", "memorization", "classification", "edits",
                "conditional", "compression"):
    try:
        importlib.import_module(f"genbench.metrics.{_module}")
    except ModuleNotFoundError as _err:  # pragma: no cover
        if _err.name != f"genbench.metrics.{_module}":
            raise

__all__ = ["EvalContext", "evaluate_metrics", "requested_metrics"]
