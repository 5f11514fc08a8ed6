"""This machine's fp32 matmul peak, measured in the same run as a benchmark's figures: the
yardstick every benchmark reports its GFLOP/s against (and, measured again after the timed
part, how busy the machine was meanwhile)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch


def matmul_peak(n: int = 2048, repeats: int = 5, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best sgemm rate in GFLOP/s over ``repeats`` products of two n x n matrices, after one
    warm-up product, at the current torch thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = clock()
        a @ b
        best = min(best, clock() - start)
    return 2 * n**3 / best / 1e9
