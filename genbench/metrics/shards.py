"""Split per-image likelihood work (IWAE, AIS, BDMC) over images, and merge it back exactly.

The estimators draw their noise by counter from (seed, global image index, draw), and every
image's computation (its chains, its HMC step size) is its own, so the images a..b computed
alone, told their global index ``offset=a``, give the same per-image numbers as inside the
whole batch, as long as each image is computed in the same matrix shapes. A CPU BLAS
product rounds a row differently depending on how many rows it has, so a function that
processes images together declares its fixed block (``align``: IWAE's groups, AIS's
:func:`~genbench.metrics.ais.ais_block`, aligned to global image indices) and shards hold
whole blocks; then sharded equals unsharded bit for bit at a fixed thread count for every
shard count. Not promised on GPUs, where the sharded numbers agree to rounding; nor for
BDMC, whose shards anneal their images together (:func:`map_subsets` has no blocks).
A shard's results are merged by concatenation in image order, so per-image estimates,
their mean and their standard error equal the unsharded ones bit for bit; a scalar
diagnostic that is a mean over images (AIS's acceptance rate) is merged as the
image-weighted mean, equal up to float rounding.

Who runs a shard is not this module's business: a *sharder* (installed around an evaluation
by :func:`genbench.running.evaluation.sharded`; the Ray one lives in ``genbench.executors``) is a
callable ``sharder(fn, jobs) -> results`` with an attribute ``shards``, where each job is the
keyword arguments of one call ``fn(model, **job)`` made where the sharder rebuilt the model.
Without a sharder the function is called here, unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from typing import Any

import torch

from genbench.metrics.obsmodel import ObservationModel

_SHARDER: ContextVar[Any] = ContextVar("genbench_sharder", default=None)


def current_sharder() -> Any:
    return _SHARDER.get()


def install(sharder: Any) -> Any:
    """Install ``sharder`` for this context; returns the token for :func:`uninstall`."""
    return _SHARDER.set(sharder)


def uninstall(token: Any) -> None:
    _SHARDER.reset(token)


MIN_SHARD = 4  # images per shard at least (fewer would cost more in overhead than they save)


def split(n: int, shards: int, align: int = 1, minimum: int = MIN_SHARD) -> list[tuple[int, int]]:
    """At most ``shards`` contiguous ranges covering 0..n, each at least ``minimum`` images
    and starting at a multiple of ``align`` (so a chunked computation groups the same
    images together sharded or not); sizes as equal as that allows."""
    align = max(1, align)
    units = -(-n // align)  # aligned groups of images
    shards = max(1, min(shards, units, n // max(1, minimum) or 1))
    base, extra = divmod(units, shards)
    out, start = [], 0
    for i in range(shards):
        stop = min(n, start + (base + (1 if i < extra else 0)) * align)
        out.append((start, stop))
        start = stop
    return out


def _active(n: int) -> Any:
    sharder = current_sharder()
    return sharder if sharder is not None and getattr(sharder, "shards", 1) > 1 and n > 1 else None


def map_images(fn: Callable[..., Any], model: torch.nn.Module, x: torch.Tensor,
               y: torch.Tensor | None = None, *, align: int = 1, **kwargs: Any) -> Any:
    """``fn(model, x, y, **kwargs)``, split over the images of x when a sharder is installed.

    ``fn`` must take ``offset`` (the global index of x[0]) and return per-image tensors
    (N, ...) or a tuple of them and image-mean floats. ``align``: the number of images
    ``fn`` processes together (IWAE's groups), so shards cut between groups.
    """
    sharder = _active(x.shape[0])
    if sharder is None:
        return fn(model, x=x, y=y, **kwargs)
    kwargs = {k: v for k, v in kwargs.items() if k != "progress"}  # a local display
    ranges = split(x.shape[0], sharder.shards, align)
    if len(ranges) == 1:
        return fn(model, x=x, y=y, **kwargs)
    jobs = []
    for a, b in ranges:
        job = {k: (v.images(a, b) if isinstance(v, ObservationModel) else v) for k, v in kwargs.items()}
        job.update(x=x[a:b], y=None if y is None else y[a:b], offset=a)
        jobs.append(job)
    return merge(sharder(fn, jobs), [b - a for a, b in ranges])


def map_subsets(fn: Callable[..., Any], model: torch.nn.Module, n: int, *,
                span: tuple[int, int] | None = None, **kwargs: Any) -> Any:
    """``fn(model, n=n, **kwargs)`` split into calls ``fn(..., subset=(a, b))`` that compute
    images a..b of the n (BDMC: every shard simulates all n, then anneals its own).
    ``span=(a, b)``: only images a..b of the n (BDMC's rounds), split the same way."""
    lo, hi = span if span is not None else (0, n)
    whole = {} if span is None else {"subset": span}
    sharder = _active(hi - lo)
    if sharder is None:
        return fn(model, n=n, **whole, **kwargs)
    ranges = [(lo + a, lo + b) for a, b in split(hi - lo, sharder.shards)]
    if len(ranges) == 1:
        return fn(model, n=n, **whole, **kwargs)
    kwargs = {k: v for k, v in kwargs.items() if k != "progress"}
    jobs = [{**kwargs, "n": n, "subset": (a, b)} for a, b in ranges]
    return merge(sharder(fn, jobs), [b - a for a, b in ranges])


def merge(parts: Sequence[Any], sizes: Sequence[int]) -> Any:
    """Shard results back into one: tensors concatenated along images, floats averaged with
    the shards' image counts as weights, tuples and dataclasses field by field."""
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(parts))
    if isinstance(first, tuple):
        return tuple(merge([p[i] for p in parts], sizes) for i in range(len(first)))
    if isinstance(first, float | int) and not isinstance(first, bool):
        return sum(p * s for p, s in zip(parts, sizes, strict=True)) / sum(sizes)
    if dataclasses.is_dataclass(first):
        return dataclasses.replace(first, **{
            f.name: merge([getattr(p, f.name) for p in parts], sizes)
            for f in dataclasses.fields(first) if f.init})
    raise TypeError(f"cannot merge shard results of type {type(first).__name__}")
