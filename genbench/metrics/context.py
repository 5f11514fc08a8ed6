"""What a metric adapter is handed. The cores underneath are pure functions on tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from genbench.data.bundle import DataBundle
from genbench.metrics.inference import Inference, SimulatedMoments
from genbench.presets import Preset

# a metric's result may hold this key: {result key: reason} for the keys it could not measure
# while it measured the others (recon: no BCE of a Gaussian mean, the squared error kept)
NOT_APPLICABLE = "not_applicable"


class EvalProgress:
    """Where evaluation says how far it is (the CLI's display; this base says nothing).

    The runner calls :meth:`start` and :meth:`end` around each metric; a metric's long
    loops call :meth:`update` through :meth:`EvalContext.progress` with how much of how
    much is done in a unit a reader knows ("images", "AIS steps", "samples").
    """

    def start(self, metric: str) -> None: ...
    def update(self, metric: str, done: int, total: int, unit: str) -> None: ...
    def end(self, metric: str, seconds: float, failed: str | None = None) -> None: ...


D = TypeVar("D")


@dataclass(frozen=True)
class MetricResult:
    """What a metric adapter may return instead of a plain dict: its recorded ``values``
    and a typed ``detail`` that the runner hands to the metrics declared ``after`` it
    (:attr:`EvalContext.upstream`), never written to metrics.json (the AIS run that BDMC
    certifies: its schedule and start)."""

    values: dict[str, float]
    detail: Any = None


@dataclass
class EvalContext:
    model: torch.nn.Module  # in eval mode, on ``device``
    data: DataBundle  # on ``device``
    preset: Preset  # sample counts etc. (never tied to a chunk size)
    seed: int  # evaluation randomness derives from this
    device: torch.device
    cache_dir: Path  # content-hashed caches (feature extractors, floors)
    results_root: Path | None = None  # results/ (for per-dataset floors)
    run_dir: Path | None = None
    # values computed earlier in the same evaluation (e.g. a chosen observation variance)
    results: dict[str, Any] = field(default_factory=dict)
    # the inference network q(z|x) of a model without a density encoder, by observation model
    # ("shared"): fitted once per evaluation, shared by IWAE, AIS and BDMC (metrics/inference.py)
    inference: dict[str, Inference] = field(default_factory=dict)
    # the simulated (z, generate(z)) moments those networks are fitted from, by observation
    # kind: simulated once, refitted at any level (the shared family's, the own decoder's)
    simulations: dict[str, SimulatedMoments] = field(default_factory=dict)
    watch: EvalProgress = field(default_factory=EvalProgress)  # progress display
    metric: str = ""  # the metric being evaluated (set by the runner)
    # the results of the metrics run so far in this evaluation, by metric name (set by the
    # runner): a metric reads those it declares ``after`` through :meth:`upstream_detail`
    upstream: dict[str, MetricResult] = field(default_factory=dict)

    def upstream_detail(self, metric: str, kind: type[D]) -> D | None:
        """The typed detail metric ``metric`` handed over, or None where it did not run
        (not requested, n/a, failed) or handed over something else."""
        found = self.upstream.get(metric)
        detail = None if found is None else found.detail
        return detail if isinstance(detail, kind) else None

    def progress(self, done: int, total: int, unit: str) -> None:
        """Tell the display ``done`` of ``total`` ``unit`` of this metric are done."""
        self.watch.update(self.metric, done, total, unit)

    def tracker(self, unit: str, offset: int = 0, total: int | None = None
                ) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` for a metric's inner loop, in ``unit``.

        ``offset``/``total`` place one loop inside a larger count (AIS forward, then reverse).
        """
        return lambda done, n: self.progress(offset + done, total if total is not None else n, unit)

    def generator(self, salt: int) -> torch.Generator:
        """A device generator seeded by (seed, salt): each metric draws its own stream."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + salt)
        return gen
