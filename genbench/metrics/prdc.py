"""Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

Both describe each set's support by k-nearest-neighbour balls around its points:

- precision: share of generated points inside some real point's ball (k-NN among reals);
- recall: share of real points inside some generated point's ball (k-NN among generated);
- density: mean number of real balls holding a generated point, divided by k (can exceed 1);
- coverage: share of real points whose ball holds at least one generated point.

genbench uses k = 3 for precision/recall (Kynkäänniemi et al.) and k = 5 for
density/coverage (Naeem et al.). The definitions are those of the authors' ``prdc``
package (the radius of a point is its distance to its k-th neighbour, the point itself
not counted). Distances are computed in float64, ``chunk`` generated points at a time,
so memory is (N_real x chunk) and the answer does not depend on the chunk.
"""

from __future__ import annotations

import torch

from genbench.metrics.finite import require_finite

PR_K = 3  # Kynkäänniemi et al. 2019
DC_K = 5  # Naeem et al. 2020
DEFAULT_CHUNK = 1024


def knn_radii(features: torch.Tensor, k: int, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Distance from each row (N, D) to its k-th nearest other row: (N,)."""
    return knn_radii_at(features, (k,), chunk)[k]


def knn_radii_at(features: torch.Tensor, ks: tuple[int, ...], chunk: int = DEFAULT_CHUNK
                 ) -> dict[int, torch.Tensor]:
    """k -> the distance from each row (N, D) to its k-th nearest other row (N,), for every k
    in ``ks`` from one pass over the distances (the k-th of the largest k's sorted neighbours
    is the k-th neighbour itself)."""
    f = features.to(torch.float64)
    top = max(ks)
    if f.shape[0] <= top:
        raise ValueError(f"k-NN radii with k={top} need more than {top} points, got {f.shape[0]}")
    out = []
    for start in range(0, f.shape[0], chunk):
        d = torch.cdist(f[start : start + chunk], f)  # (c, N), includes the 0 to itself
        out.append(d.topk(top + 1, dim=1, largest=False).values)
    near = torch.cat(out)  # (N, top + 1), ascending
    return {k: near[:, k].contiguous() for k in ks}


def prdc_features_to_metric(
    real: torch.Tensor,
    generated: torch.Tensor,
    *,
    k: int,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """precision, recall, density and coverage for one k (the prdc package's definitions);
    refuses NaN or inf features (a NaN is inside no ball: coverage would be a silent 0)."""
    return prdc_at(real, generated, ks=(k,), chunk=chunk)[k]


def prdc_at(real: torch.Tensor, generated: torch.Tensor, *, ks: tuple[int, ...],
            chunk: int = DEFAULT_CHUNK) -> dict[int, dict[str, float]]:
    """k -> :func:`prdc_features_to_metric` at k, for every k in ``ks`` from one pass over
    each distance matrix (the same numbers, to the bit, as one call per k)."""
    require_finite(real, "real feature rows")
    require_finite(generated, "generated feature rows")
    r, g = real.to(torch.float64), generated.to(torch.float64)
    radii_r = knn_radii_at(r, ks, chunk)  # k -> (Nr,)
    radii_g = knn_radii_at(g, ks, chunk)  # k -> (Ng,)
    inside_real: dict[int, list[torch.Tensor]] = {k: [] for k in ks}  # real balls holding each sample
    recalled = {k: torch.zeros(r.shape[0], dtype=torch.bool, device=r.device) for k in ks}
    nearest = torch.full((r.shape[0],), float("inf"), dtype=torch.float64, device=r.device)
    for start in range(0, g.shape[0], chunk):
        d = torch.cdist(r, g[start : start + chunk])  # (Nr, c)
        for k in ks:
            inside_real[k].append((d < radii_r[k][:, None]).sum(0))
            recalled[k] |= (d < radii_g[k][None, start : start + chunk]).any(1)
        nearest = torch.minimum(nearest, d.min(1).values)
    out = {}
    for k in ks:
        counts = torch.cat(inside_real[k]).to(torch.float64)  # (Ng,)
        out[k] = {
            "precision": float((counts > 0).double().mean()),
            "recall": float(recalled[k].double().mean()),
            "density": float(counts.mean() / k),
            "coverage": float((nearest < radii_r[k]).double().mean()),
        }
    return out


def prdc_standard(real: torch.Tensor, generated: torch.Tensor, chunk: int = DEFAULT_CHUNK
                  ) -> dict[str, float]:
    """genbench's convention: precision/recall at k = 3, density/coverage at k = 5."""
    both = prdc_at(real, generated, ks=(PR_K, DC_K), chunk=chunk)
    pr, dc = both[PR_K], both[DC_K]
    return {"precision": pr["precision"], "recall": pr["recall"],
            "density": dc["density"], "coverage": dc["coverage"]}
