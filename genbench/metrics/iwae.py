"""The importance-weighted bound on log p(x) (Burda, Grosse & Salakhutdinov 2015).

    L_k(x) = log (1/k) sum_j p(x, z_j) / q(z_j | x),   z_j ~ q(z | x),

a lower bound that rises towards log p(x) as k grows (L_1 is the ELBO). Memory is bounded
for any k and any test-set size: each image is encoded once, its k draws are decoded
``chunk`` (sample, image) rows at a time, and the log-mean-exp is accumulated as a running
(max, sum) in float64, so nothing of size k x N x D is ever held. The draws come from
counter-based noise addressed by (seed, image, draw), so the number does not depend on
``chunk`` either.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import sys
from collections.abc import Callable, Iterator

import torch
from torch.distributions import Distribution, Independent, Normal

from genbench.metrics.obsmodel import ObservationModel
from genbench.metrics.sampling import Encoder, counter_normal, encode, reparameterize


@functools.cache
def retain_large_allocations() -> bool:
    """Ask glibc to keep freed tensor buffers instead of returning them to the OS.

    Each chunk allocates a few megabytes (decoder activations and logits) and frees them;
    with glibc's defaults these are unmapped and mapped again chunk after chunk, which cost
    about a fifth of the IWAE time here (benchmarks/bench_likelihood.py). Raising the mmap
    and trim thresholds (64 MB, 128 MB) is what PyTorch's CPU tuning guide gets from
    swapping in jemalloc or tcmalloc. Process-wide, done once; GENBENCH_MALLOPT=0 skips it.
    """
    if not sys.platform.startswith("linux") or os.environ.get("GENBENCH_MALLOPT", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
        return bool(libc.mallopt(m_mmap_threshold, 64 << 20) and libc.mallopt(m_trim_threshold, 128 << 20))
    except (OSError, AttributeError):  # not glibc (musl, ...): keep the defaults
        return False


class LogMeanExp:
    """A streaming log-mean-exp over the last axis, per row, in float64."""

    def __init__(self, rows: int, device: torch.device) -> None:
        self.max = torch.full((rows,), -math.inf, dtype=torch.float64, device=device)
        self.sum = torch.zeros(rows, dtype=torch.float64, device=device)
        self.count = 0

    def add(self, values: torch.Tensor) -> None:
        """values (rows, m): fold m more terms into each row."""
        v = values.double()
        new_max = torch.maximum(self.max, v.max(-1).values)
        safe = torch.where(torch.isinf(new_max), torch.zeros_like(new_max), new_max)
        self.sum = self.sum * torch.exp(self.max - safe) + torch.exp(v - safe[:, None]).sum(-1)
        self.max = new_max
        self.count += values.shape[-1]

    def result(self) -> torch.Tensor:
        return self.max + torch.log(self.sum) - math.log(self.count)


def iwae_group(k: int, chunk: int) -> int:
    """Images encoded and decoded together: a group's k draws fill about ``chunk`` rows."""
    return max(1, chunk // k)


def plan(n_images: int, k: int, chunk: int) -> Iterator[tuple[int, int]]:
    """Image groups (start, stop) so that a group's k draws fill about ``chunk`` rows."""
    per_group = iwae_group(k, chunk)
    for start in range(0, n_images, per_group):
        yield start, min(n_images, start + per_group)


def _diagonal_normal(dist: Distribution) -> Normal | None:
    base = dist.base_dist if isinstance(dist, Independent) else dist
    return base if isinstance(base, Normal) and dist.event_shape == base.batch_shape[-1:] else None


def log_prior_over_q(prior: Distribution, q: Distribution, z: torch.Tensor, eps: torch.Tensor
                     ) -> torch.Tensor:
    """log p(z) - log q(z|x) for z = loc + scale * eps, (S, n).

    For the usual diagonal Gaussians, in closed form from eps (the 2 pi terms cancel):
    sum_d [eps^2/2 + log s_q - ((z - m_p)/s_p)^2/2 - log s_p]. torch.distributions' two
    ``log_prob`` calls validate and broadcast each (S, n, D) draw, seven times the cost,
    which at k = 5000 is a few percent of the whole bound. Other families use ``log_prob``.
    """
    p_n, q_n = _diagonal_normal(prior), _diagonal_normal(q)
    if p_n is None or q_n is None or eps.shape != z.shape:
        return prior.log_prob(z) - q.log_prob(z)
    u = (z - p_n.loc) / p_n.scale
    const = q_n.scale.log().sum(-1) - p_n.scale.log().sum(-1)
    return 0.5 * (eps.square().sum(-1) - u.square().sum(-1)) + const


NOISE_FLOATS = 1 << 18  # latent draws made at once (1 MB): amortizes the small per-draw ops


Proposal = Callable[[int, int], Distribution]  # (start, stop) -> q(z | rows start..stop)
LogLik = Callable[[torch.Tensor, int, int], torch.Tensor]  # (z (S, n, D), start, stop) -> (S, n)


def importance_bound(prior: Distribution, proposal: Proposal, log_lik: LogLik, n: int, *, k: int,
                     seed: int, chunk: int, device: torch.device, offset: int = 0,
                     progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """log 1/k sum_j p(z_j) lik(z_j) / q(z_j) per row, (n,) float64, z_j ~ q = proposal(rows).

    The one importance-sampling loop behind every IWAE-style bound (:func:`iwae_bound`, and
    JMVAE's log p(x, y) and log p(y)): rows are taken in groups whose k draws fill about
    ``chunk`` (draw, row) pairs, each group's proposal is built once and reused by all its
    draws, the draws come by counter from (seed, offset + row, draw), and the log-mean-exp is
    accumulated in float64; ``chunk`` changes the memory, never the answer.
    ``progress(rows done, rows)`` is called after each group.
    """
    retain_large_allocations()
    per_pass = max(1, min(k, chunk))  # draws per likelihood pass
    out = []
    for start, stop in plan(n, k, chunk):
        q = proposal(start, stop)
        d, m = q.event_shape[-1], stop - start
        block = per_pass * max(1, NOISE_FLOATS // (per_pass * m * d))  # draws per noise block
        rows = torch.arange(offset + start, offset + stop, device=device)
        acc = LogMeanExp(m, device)
        for b0 in range(0, k, block):
            draws = torch.arange(b0, min(k, b0 + block), device=device)
            eps = counter_normal(seed, rows, draws, d)
            z = reparameterize(q, eps)  # (B, m, D)
            log_w = log_prior_over_q(prior, q, z, eps)  # (B, m)
            for c0 in range(0, len(draws), per_pass):
                log_w[c0:c0 + per_pass] += log_lik(z[c0:c0 + per_pass], start, stop)
            acc.add(log_w.T)
        out.append(acc.result())
        if progress is not None:
            progress(stop, n)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64, device=device)


@torch.no_grad()
def iwae_bound(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
               k: int, seed: int, chunk: int, obs: ObservationModel | None = None,
               progress: Callable[[int, int], None] | None = None, offset: int = 0,
               encoder: Encoder | None = None) -> torch.Tensor:
    """L_k(x) per image, (N,) float64, in nats.

    ``chunk`` bounds the (draw, image) rows decoded at once: memory, never the answer.
    ``obs`` is the observation model p(x|z) (default: the model's own decoder).
    ``progress(images done, images)`` is called after each group of images.
    ``offset`` is the global index of x[0] (its noise's address): a shard of the test images
    (:mod:`genbench.metrics.shards`) draws what the whole set would for the same images.
    ``encoder(x, y)`` is the proposal q(z|x) (default: the model's ``encode``): any normalized
    q gives a lower bound, e.g. a fitted inference network (:mod:`genbench.metrics.inference`).
    """
    obs = obs or ObservationModel("decoder")
    encoder = encoder or (lambda xs, ys: encode(model, xs, ys))

    def labels(a: int, b: int) -> torch.Tensor | None:
        return None if y is None else y[a:b]

    def proposal(a: int, b: int) -> Distribution:  # each image encoded once
        return encoder(x[a:b], labels(a, b))

    def log_lik(z: torch.Tensor, a: int, b: int) -> torch.Tensor:
        return obs.images(a, b).log_lik(model, z, labels(a, b), x[a:b])

    return importance_bound(model.prior(), proposal, log_lik, x.shape[0], k=k, seed=seed,
                            chunk=chunk, device=x.device, offset=offset, progress=progress)
