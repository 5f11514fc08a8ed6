"""What a metric adapter is handed. The cores underneath are pure functions on tensors."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genbench.data.bundle import DataBundle
from genbench.presets import Preset


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

    def generator(self, salt: int) -> torch.Generator:
        """A device generator seeded by (seed, salt): each metric draws its own stream."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * 1_000_003 + salt)
        return gen
