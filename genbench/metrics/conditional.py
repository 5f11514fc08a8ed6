"""log p(x | y) of a joint model of images and labels (JMVAE), from two importance-weighted bounds.

A joint model p(x, y) = E_p(z)[p(x|z) p(y|z)] gives its likelihoods of x through q(z|x) with y
marginalized, log p(x), like any VAE. The conditional likelihood that a conditional model
(CVAE, whose ``test_iwae`` is log p(x|y)) reports needs the ratio

    log p(x | y) = log p(x, y) - log p(y),

and each term is estimated by importance sampling with k draws, as the IWAE bound (Burda et al.
2015) estimates log p(x):

    L_k(x, y) = log 1/k sum_j p(x|z_j) p(y|z_j) p(z) / q(z_j|x, y),   z_j ~ q(z|x, y)  (joint encoder)
    L_k(y)    = log 1/k sum_j p(y|z_j) p(z_j) / q(z_j|y),              z_j ~ q(z|y)     (label encoder)

Both are stochastic lower bounds that rise to their log-likelihoods as k grows, so their
difference is a *consistent* estimate of log p(x|y) (exact as k -> infinity) that is neither a
lower nor an upper bound: a loose L_k(y) makes it too high, a loose L_k(x, y) too low. p(x|z)
is the model's own decoder (n/a where it does not fit the data, as for ``test_iwae``).

Suzuki et al. (2016), as we recall their evaluation (the copy of the paper at hand stops before
it, so this is not checked against the text), estimate the conditional log-likelihood with one
importance-sampled bound, log 1/k sum_j p(x|z_j) q(z_j|y) / q(z_j|x, y) with z_j ~ q(z|x, y):
the label encoder q(z|y) stands in for p(z|y). That is a lower bound on the likelihood of
another model, one whose prior is q(z|y), not on the joint model's own log p(x|y), which the
difference above estimates. Numbers from the two are not interchangeable.

The model provides the three hooks of the contract's capability ``joint``: ``encode_joint(x, y,
measures=None)``, ``encode_labels(y)`` and ``label_log_prob(z, y)``. y is what the dataset
labels (classes, or CelebA's attributes), the same y a CVAE conditions on; Morpho-MNIST
measures that a model also generates are marginalized in p(y|z) and serve only as side
information for the joint proposal. Draws use the counter-based noise of :mod:`sampling`
addressed by (seed, image, draw), so the number of draws is k whatever the chunk size, and the
numbers do not depend on it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.distributions import Distribution

from genbench.errors import GenbenchError
from genbench.metrics.context import EvalContext
from genbench.metrics.estimates import BPD, mean_stderr, own_observation, save_per_image, with_bpd
from genbench.metrics.iwae import importance_bound, iwae_group
from genbench.metrics.obsmodel import ObservationModel
from genbench.metrics.sampling import derive_seed, seed_from
from genbench.metrics.shards import map_images
from genbench.registry import ResultKey, register_metric

SALT_GIVEN_Y = 31


@torch.no_grad()
def joint_bound(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int, seed: int,
                chunk: int, measures: torch.Tensor | None = None, obs: ObservationModel | None = None,
                offset: int = 0, progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """L_k(x, y): the IWAE bound on log p(x, y) with q(z|x, y) as proposal, (N,) float64."""
    obs = obs or ObservationModel("decoder")

    def proposal(a: int, b: int) -> Distribution:
        if measures is None:
            return model.encode_joint(x[a:b], y[a:b])
        return model.encode_joint(x[a:b], y[a:b], measures=measures[a:b])

    def log_lik(z: torch.Tensor, a: int, b: int) -> torch.Tensor:
        return obs.images(a, b).log_lik(model, z, None, x[a:b]) + model.label_log_prob(z, y[a:b])

    return importance_bound(model.prior(), proposal, log_lik, x.shape[0], k=k, seed=seed, chunk=chunk,
                            device=x.device, offset=offset, progress=progress)


@torch.no_grad()
def label_bound(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int, seed: int,
                chunk: int, offset: int = 0, progress: Callable[[int, int], None] | None = None
                ) -> torch.Tensor:
    """L_k(y): the IWAE bound on log p(y) with q(z|y) as proposal, (N,) float64 (x gives only
    the row count and device, so shards split it like the joint bound)."""
    return importance_bound(model.prior(), lambda a, b: model.encode_labels(y[a:b]),
                            lambda z, a, b: model.label_log_prob(z, y[a:b]), y.shape[0], k=k,
                            seed=seed, chunk=chunk, device=x.device, offset=offset, progress=progress)


def joint_bound_shard(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *,
                      all_measures: torch.Tensor | None, offset: int = 0, **kwargs) -> torch.Tensor:
    """:func:`joint_bound` on images offset.. of the split, given the whole split's measures
    (what :func:`~genbench.metrics.shards.map_images` can hand each shard unchanged)."""
    measures = None if all_measures is None else all_measures[offset:offset + x.shape[0]]
    return joint_bound(model, x, y, measures=measures, offset=offset, **kwargs)


def conditional_log_likelihood(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, k: int,
                               seed: int, chunk: int, measures: torch.Tensor | None = None,
                               obs: ObservationModel | None = None,
                               progress: Callable[[int, int], None] | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log p(x|y) estimate, L_k(x, y), L_k(y)), each (N,) float64; the two bounds draw
    independent noise (seeds derived from ``seed``)."""
    align = iwae_group(k, chunk)
    joint = map_images(joint_bound_shard, model, x, y, align=align, all_measures=measures, k=k,
                       seed=derive_seed(seed, 1), chunk=chunk, obs=obs, progress=progress)
    labels = map_images(label_bound, model, x, y, align=align, k=k, seed=derive_seed(seed, 2),
                        chunk=chunk)
    return joint - labels, joint, labels


OWN = "under the model's own p(x|z) (its decoder)"
KEY = "test_iwae_given_y"


IWAE_GIVEN_Y_KEYS = (
    ResultKey("test_iwae_given_y",
              label="log p(x|y)",
              caveat=("The conditional log-likelihood log p(x|y) of the test image given its true "
                      "label, under the model's own p(x|z). A conditional model (CVAE, †) bounds it "
                      "from below with its IWAE bound; a joint model of images and labels (JMVAE) "
                      "estimates it as log p(x, y) - log p(y), each an IWAE bound with k draws "
                      "(proposals q(z|x, y) and q(z|y)). That difference is consistent (exact as k "
                      "grows) but neither a lower nor an upper bound: a loose log p(y) makes it too "
                      "high. It is easier than log p(x): compare it only with its own column."),
              direction="unranked",
              unit="nats/image",
              section="Likelihood given the label",
              stderr=True,
              bpd=True,
              estimates="log p(x|y)",
              observation="model"),
    ResultKey("test_iwae_joint",
              label="log p(x, y) (IWAE)",
              caveat=("The IWAE bound on log p(x, y), the image and its label together, with the joint"
                      " encoder q(z|x, y) as proposal: the first part of log p(x|y)."),
              direction="higher",
              unit="nats/image",
              section="Likelihood given the label",
              stderr=True,
              estimates="log p(x, y)",
              observation="model"),
    ResultKey("test_iwae_labels",
              label="log p(y) (IWAE)",
              caveat=("The IWAE bound on log p(y), the label alone, with the label encoder q(z|y) (or "
                      "the prior) as proposal: the part subtracted from log p(x, y). A log p(y) near "
                      "log(1/10) on ten balanced classes says the model's p(y) is right."),
              direction="unranked",
              unit="nats/image",
              section="Likelihood given the label",
              stderr=True,
              estimates="log p(y)",
              observation="model"),
)


@register_metric(
    "iwae_given_y",
    keys=IWAE_GIVEN_Y_KEYS,
    needs={"joint", "decode", "prior"},
    produces={
        KEY: f"log p(x|y) = log p(x, y) - log p(y) with the true label y, {OWN}, nats/image: two IWAE "
             "bounds with k draws each (q(z|x,y) and q(z|y) as proposals), a consistent estimate "
             "(exact as k grows) that is neither a lower nor an upper bound",
        f"{KEY}_bpd": f"{KEY} in {BPD}",
        "test_iwae_joint": f"IWAE bound on log p(x, y) with q(z|x, y) as proposal, {OWN}, nats/image",
        "test_iwae_labels": "IWAE bound on log p(y) with q(z|y) as proposal, nats/image",
    },
    higher_is_better={f"{KEY}_bpd": False, "test_iwae_joint": True},
    description=f"conditional log-likelihood log p(x|y) of a joint model of images and labels (JMVAE), "
                f"{OWN}, as the difference of two importance-weighted bounds with preset k draws "
                "each: consistent, but neither a lower nor an upper bound; comparable with a "
                "conditional model's (CVAE's) test_iwae, which is a lower bound on the same quantity",
)
def iwae_given_y_metric(ctx: EvalContext) -> dict[str, float]:
    obs = own_observation(ctx)
    p, data = ctx.preset, ctx.data
    x, y = data.eval_x("test", p.n_eval), data.eval_y("test", p.n_eval)
    if y is None:
        raise GenbenchError(f"dataset {data.info.name!r} has no labels to condition on")
    measures = None if data.test.measures is None else data.test.measures[: x.shape[0]]
    est, joint, labels = conditional_log_likelihood(
        ctx.model, x, y, k=p.iwae_k, seed=seed_from(ctx.generator(SALT_GIVEN_Y)), chunk=p.iwae_chunk,
        measures=measures, obs=obs, progress=ctx.tracker("images (log p(x, y))"))
    save_per_image(ctx, KEY, est)
    (jm, js), (lm, ls) = mean_stderr(joint), mean_stderr(labels)
    return {**with_bpd(ctx, KEY, est), "test_iwae_joint": jm, "test_iwae_joint_stderr": js,
            "test_iwae_labels": lm, "test_iwae_labels_stderr": ls}
