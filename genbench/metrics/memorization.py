"""Memorization: how many samples sit closer to a training image than training images sit
to each other, beside the same fraction for fresh test images (the real-versus-real floor).

Authenticity after Alaa, van Breugel, Saveliev & van der Schaar (2022, "How faithful is your
synthetic data?", sec. 3.3): in the evaluator's feature space, a sample g whose nearest
training image t is closer to g than t is to its own nearest other training image,

    d(g, t) < d(t, NN_train(t)),

is counted as a copy of t. Images drawn afresh from the data distribution also fall that close
by chance, so the number means something only beside the same fraction for held-out test
images: a model that memorizes its 4,000 training images lies well above that floor, a model
that generalizes at it. The difference is reported with its binomial standard error.
"""

from __future__ import annotations

import math

import torch

from genbench.errors import GenbenchError
from genbench.metrics.context import EvalContext
from genbench.metrics.quality import real_features
from genbench.registry import ResultKey, register_metric

CHUNK = 128  # query rows per distance block (memory only: CHUNK x training images doubles)


def nearest(query: torch.Tensor, ref: torch.Tensor, *, self_index: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query row's nearest row of ``ref`` (Euclidean), in blocks.
    ``self_index`` (one per query row): that row of ``ref`` is the query itself, skipped."""
    dist, idx = [], []
    for start in range(0, query.shape[0], CHUNK):
        q = query[start:start + CHUNK].double()
        d = torch.cdist(q, ref.double())
        if self_index is not None:
            rows = torch.arange(q.shape[0], device=q.device)
            d[rows, self_index[start:start + CHUNK]] = math.inf
        v, i = d.min(1)
        dist.append(v)
        idx.append(i)
    return torch.cat(dist), torch.cat(idx)


def copy_flags(samples: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Per sample: True when it is closer to its nearest training image than that image is
    to its nearest other training image (Alaa et al. 2022's unauthentic samples).

    Only the training images some sample lands next to need their own radius, so the cost
    is (samples + distinct neighbours) x training images, never training images squared.
    """
    if train.shape[0] < 2:
        raise GenbenchError("memorization needs at least two training images")
    d, j = nearest(samples, train)
    hit, where = torch.unique(j, return_inverse=True)
    radius, _ = nearest(train[hit], train, self_index=hit)
    return d < radius[where]


def binomial(flags: torch.Tensor) -> tuple[float, float]:
    p = float(flags.double().mean())
    return p, math.sqrt(max(p * (1 - p), 0.0) / flags.numel())


MEMORIZATION_KEYS = (
    ResultKey("copied_fraction",
              label="copied",
              caveat=("The share of samples that sit closer to a training image than that image sits "
                      "to any other training image (authenticity, Alaa et al. 2022). Fresh data does "
                      "this by chance too, so read it beside the test-image floor."),
              direction="lower",
              unit="fraction",
              section="Memorization"),
    ResultKey("copied_excess",
              label="copied - test floor",
              caveat=("copied minus the same share for held-out test images, with its binomial "
                      "standard error. Clearly above zero: the model reproduces training images."),
              direction="lower",
              unit="fraction",
              section="Memorization"),
)


@register_metric(
    "memorization",
    keys=MEMORIZATION_KEYS,
    needs={"sample"},
    produces={
        "copied_fraction": "share of samples closer to their nearest training image than it is to "
                           "its nearest other training image, in the evaluator's features (Alaa et al. 2022)",
        "copied_excess": "copied_fraction minus the same share for held-out test images (the floor): "
                         "above zero, the model reproduces its training images more than fresh data would",
        "floor_copied_fraction": "copied_fraction of held-out test images against the training "
                                 "images (the floor copied_excess subtracts)",
    },
    higher_is_better={"copied_fraction": False, "copied_excess": False,
                      "floor_copied_fraction": False},
    description="memorization: samples that copy a training image (authenticity, Alaa et al. 2022), "
                "beside the real-vs-real floor of held-out test images",
)
def memorization_metric(ctx: EvalContext) -> dict[str, float]:
    from genbench.metrics.quality import _extractor, _samples  # the evaluator's features

    p, data = ctx.preset, ctx.data
    if p.n_quality < 10:
        raise GenbenchError(f"n_quality={p.n_quality} is too few; use --set n_quality=256 or more")
    ext = _extractor(ctx)
    # every training image: a copy of one left out would go unseen
    train = real_features(ext, data.train.x, data.info.variant, len(data.train)).features
    test = real_features(ext, data.test.x, data.info.variant, min(p.n_quality, len(data.test))).features
    samples = _samples(ctx, ext).features  # the samples quality scored, drawn once
    frac, se = binomial(copy_flags(samples, train))
    floor, floor_se = binomial(copy_flags(test, train))
    return {"copied_fraction": frac, "copied_fraction_stderr": se, "floor_copied_fraction": floor,
            "copied_excess": frac - floor, "copied_excess_stderr": math.sqrt(se**2 + floor_se**2)}
