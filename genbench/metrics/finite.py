"""One refusal for every sample metric: features (or logits, counts) that hold NaN or inf.

A NaN compares false with everything, so a k-NN ball test silently counts 0 (coverage 0.0),
an argmax picks the NaN (a wrong class histogram) and a mean turns NaN. The pure metric
functions call :func:`require_finite` on their inputs instead, and the runner records the
metric as n/a with this one line.
"""

from __future__ import annotations

import torch

from genbench.errors import GenbenchError

NOT_FINITE_FEATURES = "features are not finite"


class NonFiniteFeatures(GenbenchError, ValueError):
    """A metric's input holds NaN or inf: the metric is n/a, never a silent number."""


def require_finite(values: torch.Tensor, what: str) -> torch.Tensor:
    """``values`` unchanged, or one line naming ``what`` and how many rows hold NaN or inf."""
    finite = torch.isfinite(values)
    if bool(finite.all()):
        return values
    bad = int((~finite).reshape(finite.shape[0], -1).any(1).sum()) if values.dim() > 0 else 1
    rows = values.shape[0] if values.dim() > 0 else 1
    raise NonFiniteFeatures(f"{NOT_FINITE_FEATURES}: {bad} of {rows} {what} hold NaN or inf")
