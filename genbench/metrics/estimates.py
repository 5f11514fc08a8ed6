"""Helpers every likelihood adapter shares: mean and standard error, bits/dim, the per-image
record of an estimate, and the model's own observation model.

They sit apart from :mod:`elbo` and :mod:`likelihood` so both can use them without importing
each other.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from genbench.errors import GenbenchError
from genbench.metrics.context import EvalContext
from genbench.metrics.obsmodel import ObservationModel, own_decoder_reason
from genbench.metrics.sampling import labels_for
from genbench.store import read_json, write_json

PER_IMAGE = "per_image.json"
BPD = ("bits/dim: -log p(x) / (D ln 2), plus 8 on continuous data (a density on [0, 1] pixels "
       "read as 8-bit dequantized data)")


def mean_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error std/sqrt(n), in float64."""
    v = values.double()
    n = v.numel()
    return float(v.mean()), float(v.std() / n**0.5) if n > 1 else float("nan")


def bits_per_dim(nats: float, dims: int, continuous: bool) -> float:
    """Bits per dimension of a log-likelihood in nats per image (see ``BPD``)."""
    return -nats / (dims * math.log(2)) + (8.0 if continuous else 0.0)


def with_bpd(ctx: EvalContext, key: str, values: torch.Tensor) -> dict[str, float]:
    """``key`` (mean), its standard error, and the same in bits/dim."""
    mean, se = mean_stderr(values)
    dims = math.prod(ctx.data.info.shape)
    return {key: mean, f"{key}_stderr": se,
            f"{key}_bpd": bits_per_dim(mean, dims, ctx.data.info.observation == "gaussian"),
            f"{key}_bpd_stderr": se / (dims * math.log(2))}


def save_per_image(ctx: EvalContext, key: str, values: torch.Tensor, split: str = "test") -> None:
    """One float per image of ``split`` (images 0..n-1 of the evaluation split) in the run's
    ``per_image.json``, for paired comparisons across models."""
    if ctx.run_dir is None:
        return
    path = Path(ctx.run_dir) / PER_IMAGE
    data = read_json(path)
    data[key] = {"split": split, "indices": list(range(values.numel())),
                 "values": [round(float(v), 5) for v in values.double().flatten()]}
    write_json(path, data)


def load_per_image(run_dir: Path) -> dict[str, dict[int, float]]:
    """``per_image.json`` of a run as {key: {image index: value}} ({} when absent)."""
    out = {}
    for key, rec in read_json(Path(run_dir) / PER_IMAGE).items():
        if isinstance(rec, dict) and "indices" in rec and "values" in rec:
            out[key] = dict(zip((int(i) for i in rec["indices"]), (float(v) for v in rec["values"]),
                                strict=True))
    return out


def own_observation(ctx: EvalContext) -> ObservationModel:
    """The model's own p(x|z); n/a (GenbenchError) when it has none that fits the data."""
    reason = own_decoder_reason(ctx.model, ctx.data.info.observation,
                                labels_for(ctx.model, ctx.data.eval_y("test", 1)))
    if reason is not None:
        raise GenbenchError(reason)
    return ObservationModel("decoder")
