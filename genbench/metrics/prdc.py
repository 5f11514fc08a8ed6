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
    f = features.to(torch.float64)
    if f.shape[0] <= k:
        raise ValueError(f"k-NN radii with k={k} need more than {k} points, got {f.shape[0]}")
    out = []
    for start in range(0, f.shape[0], chunk):
        d = torch.cdist(f[start : start + chunk], f)  # (c, N), includes the 0 to itself
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def prdc_features_to_metric(
    real: torch.Tensor,
    generated: torch.Tensor,
    *,
    k: int,
    chunk: int = DEFAULT_CHUNK,
) -> dict[str, float]:
    """precision, recall, density and coverage for one k (the prdc package's definitions);
    refuses NaN or inf features (a NaN is inside no ball: coverage would be a silent 0)."""
    require_finite(real, "real feature rows")
    require_finite(generated, "generated feature rows")
    r, g = real.to(torch.float64), generated.to(torch.float64)
    radius_r = knn_radii(r, k, chunk)  # (Nr,)
    radius_g = knn_radii(g, k, chunk)  # (Ng,)
    inside_real: list[torch.Tensor] = []  # per generated point: how many real balls hold it
    recalled = torch.zeros(r.shape[0], dtype=torch.bool, device=r.device)
    nearest = torch.full((r.shape[0],), float("inf"), dtype=torch.float64, device=r.device)
    for start in range(0, g.shape[0], chunk):
        d = torch.cdist(r, g[start : start + chunk])  # (Nr, c)
        inside_real.append((d < radius_r[:, None]).sum(0))
        recalled |= (d < radius_g[None, start : start + chunk]).any(1)
        nearest = torch.minimum(nearest, d.min(1).values)
    counts = torch.cat(inside_real).to(torch.float64)  # (Ng,)
    return {
        "precision": float((counts > 0).double().mean()),
        "recall": float(recalled.double().mean()),
        "density": float(counts.mean() / k),
        "coverage": float((nearest < radius_r).double().mean()),
    }


def prdc_standard(real: torch.Tensor, generated: torch.Tensor, chunk: int = DEFAULT_CHUNK
                  ) -> dict[str, float]:
    """genbench's convention: precision/recall at k = 3, density/coverage at k = 5."""
    pr = prdc_features_to_metric(real, generated, k=PR_K, chunk=chunk)
    dc = prdc_features_to_metric(real, generated, k=DC_K, chunk=chunk)
    return {"precision": pr["precision"], "recall": pr["recall"],
            "density": dc["density"], "coverage": dc["coverage"]}
