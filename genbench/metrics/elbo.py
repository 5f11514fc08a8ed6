"""The evidence lower bound, reconstruction error and active units.

ELBO (Kingma & Welling 2013): log p(x) >= E_q[log p(x|z)] - KL(q(z|x) || p(z)), in nats per
image, with the KL in closed form where torch registers one (Appendix B of the paper for
the Gaussian pair) and by Monte Carlo otherwise. Active units (Burda et al. 2015, sec. 5.2):
the latent coordinates u whose posterior mean varies across the data, Cov_x(E_q[u]) > 0.01.

The cores are pure functions on tensors; the adapters at the bottom are thin.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, kl_divergence

from genbench.metrics.context import NOT_APPLICABLE, EvalContext
from genbench.metrics.estimates import mean_stderr, own_observation, save_per_image, with_bpd
from genbench.metrics.sampling import (
    counter_normal,
    decode,
    encode,
    generate,
    labels_for,
    reparameterize,
    seed_from,
)
from genbench.registry import ResultKey, register_metric

ELBO_DRAWS = 10  # reparameterized draws per image for E_q[log p(x|z)]
IMAGE_CHUNK = 256  # images per forward pass: memory only, never the answer
ACTIVE_THRESHOLD = 0.01  # Burda et al. (2015)
SALT_ELBO = 11
BCE_UNDEFINED = ("decoded means leave [0, 1] (not a Bernoulli decoder): binary cross-entropy is "
                 "undefined; recon_mse measures the reconstruction")


def _chunks(x: torch.Tensor, y: torch.Tensor | None, chunk: int):
    """(start, x chunk, y chunk) over the images."""
    for start in range(0, x.shape[0], chunk):
        stop = start + chunk
        yield start, x[start:stop], None if y is None else y[start:stop]


def kl_term(q: Distribution, prior: Distribution, z: torch.Tensor) -> torch.Tensor:
    """KL(q || prior) per image: closed form if registered, else the mean over draws z (S, N, D)."""
    try:
        return kl_divergence(q, prior)
    except NotImplementedError:
        return (q.log_prob(z) - prior.log_prob(z)).mean(0)


@torch.no_grad()
def elbo_terms(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
               seed: int, draws: int = ELBO_DRAWS, chunk: int = IMAGE_CHUNK
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(E_q[log p(x|z)], KL(q(z|x) || p(z))) per image, each (N,), in nats.

    The recon term averages ``draws`` reparameterized samples whose noise is addressed by
    (seed, image index, draw), so the result does not depend on ``chunk``.
    """
    prior = model.prior()
    recon, kl = [], []
    for start, xc, yc in _chunks(x, y, chunk):
        q = encode(model, xc, yc)
        images = torch.arange(start, start + xc.shape[0], device=x.device)
        eps = counter_normal(seed, images, torch.arange(draws), q.event_shape[-1])
        z = reparameterize(q, eps)  # (S, n, D)
        n = xc.shape[0]
        y_rep = None if yc is None else yc.repeat(draws, *([1] * (yc.dim() - 1)))
        px = decode(model, z.reshape(draws * n, -1), y_rep)  # batch (S*n,)
        recon.append(px.log_prob(xc.repeat(draws, 1, 1, 1)).view(draws, n).mean(0))
        kl.append(kl_term(q, prior, z))
    return torch.cat(recon), torch.cat(kl)


@torch.no_grad()
def reconstruction_errors(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                          *, chunk: int = IMAGE_CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """(BCE, squared error) per image between x and the decoded mean of q's mean code.

    The BCE is a Bernoulli decoder's error: where a decoded mean leaves [0, 1] (a Gaussian
    decoder's mean may) it is undefined, and the BCE is ``None``; the squared error stays.
    """
    bce: list[torch.Tensor] | None = []
    sse = []
    for _, xc, yc in _chunks(x, y, chunk):
        xhat = generate(model, encode(model, xc, yc).mean, yc)
        if bce is not None and bool(((xhat >= 0) & (xhat <= 1)).all()):
            bce.append(F.binary_cross_entropy(xhat, xc, reduction="none").flatten(1).sum(1))
        else:
            bce = None
        sse.append((xhat - xc).pow(2).flatten(1).sum(1))
    return (None if bce is None else torch.cat(bce)), torch.cat(sse)


@torch.no_grad()
def posterior_means(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None,
                    *, chunk: int = IMAGE_CHUNK) -> torch.Tensor:
    """E_q[z|x] for every image, (N, D)."""
    return torch.cat([encode(model, xc, yc).mean for _, xc, yc in _chunks(x, y, chunk)])


def active_units(means: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> int:
    """Burda et al. (2015): number of coordinates u with Cov_x(E_q[u|x]) > threshold."""
    return int((means.double().var(0) > threshold).sum())


# -- adapters ------------------------------------------------------------------------

def _test_data(ctx: EvalContext) -> tuple[torch.Tensor, torch.Tensor | None]:
    n = ctx.preset.n_eval
    x = ctx.data.eval_x("test", n)
    return x, labels_for(ctx.model, ctx.data.eval_y("test", n))


ELBO_KEYS = (
    ResultKey("test_elbo",
              label="ELBO",
              caveat=("The evidence lower bound E_q[log p(x|z)] - KL(q(z|x) || p(z)) of Kingma & "
                      "Welling (2013) on the test set, the objective a VAE maximises. It is only a "
                      "bound: a model with a poor encoder looks worse than it is."),
              direction="higher",
              unit="nats/image",
              section="Likelihood",
              stderr=True,
              bpd=True,
              headline=7,
              estimates="log p(x)",
              kind="bound",
              stands_for=6,
              best_text="ELBO",
              observation="own"),
    ResultKey("test_recon_term",
              label="E[log p(x|z)]",
              caveat=("The ELBO's reconstruction term E_q[log p(x|z)] on the test set. Higher means "
                      "sharper reconstructions, which a model can buy with a larger KL."),
              direction="higher",
              unit="nats/image",
              section="Reconstruction",
              stderr=True,
              estimates="log p(x|z)",
              observation="own"),
    ResultKey("test_kl_term",
              label="KL(q||p)",
              caveat=("KL(q(z|x) || p(z)), the ELBO's rate: the nats the code carries about x. Neither"
                      " direction is better by itself; near zero means posterior collapse."),
              direction="unranked",
              unit="nats/image",
              section="Reconstruction",
              stderr=True,
              observation="own"),
)


@register_metric(
    "elbo",
    keys=ELBO_KEYS,
    needs={"encode", "decode", "prior", "density_encoder"},
    produces={
        "test_elbo": "evidence lower bound on log p(x) under the model's own p(x|z) (n/a if its "
                     "support does not fit the data), nats/image (test)",
        "test_elbo_bpd": "test_elbo in bits/dim: -log p(x) / (D ln 2), plus 8 on continuous data",
        "test_recon_term": "E_q[log p(x|z)], nats/image (test)",
        "test_kl_term": "KL(q(z|x) || p(z)), nats/image (test)",
    },
    higher_is_better={"test_elbo": True, "test_elbo_bpd": False, "test_recon_term": True,
                      "test_kl_term": False},
    description="ELBO = E_q[log p(x|z)] - KL(q||p) on the test split under the model's own p(x|z) "
                "(Kingma & Welling 2013)",
)
def elbo_metric(ctx: EvalContext) -> dict[str, float]:
    own_observation(ctx)  # n/a when the decoder's support does not fit the data
    x, y = _test_data(ctx)
    recon, kl = elbo_terms(ctx.model, x, y, seed=seed_from(ctx.generator(SALT_ELBO)))
    out: dict[str, float] = with_bpd(ctx, "test_elbo", recon - kl)
    save_per_image(ctx, "test_elbo", recon - kl)
    for key, values in (("test_recon_term", recon), ("test_kl_term", kl)):
        out[key], out[f"{key}_stderr"] = mean_stderr(values)
    return out


RECON_KEYS = (
    ResultKey("recon_bce",
              label="recon BCE",
              caveat=("Binary cross-entropy between a test image and its reconstruction through the "
                      "encoder's mean code. It rewards blur on ambiguous pixels and says nothing about"
                      " samples."),
              direction="lower",
              unit="nats/image",
              section="Reconstruction",
              stderr=True,
              headline=8),
    ResultKey("recon_mse",
              label="recon MSE",
              caveat=("Mean squared error between a test image and its reconstruction. Like BCE it "
                      "favours blurry averages over sharp but shifted strokes."),
              direction="lower",
              section="Reconstruction",
              stderr=True),
)


@register_metric(
    "recon",
    keys=RECON_KEYS,
    needs={"encode", "generate"},
    produces={
        "recon_bce": "binary cross-entropy of x against the decoded mean code, summed over pixels",
        "recon_mse": "squared error of the decoded mean code, summed over pixels",
    },
    higher_is_better={"recon_bce": False, "recon_mse": False},
    description="reconstruction error per test image, from the encoder's mean code",
)
def recon_metric(ctx: EvalContext) -> dict[str, float]:
    x, y = _test_data(ctx)
    bce, sse = reconstruction_errors(ctx.model, x, y)
    out: dict[str, Any] = {}
    for key, values in (("recon_bce", bce), ("recon_mse", sse)):
        if values is not None:
            out[key], out[f"{key}_stderr"] = mean_stderr(values)
    if bce is None:  # the runner records these keys as n/a with the reason
        out[NOT_APPLICABLE] = dict.fromkeys(("recon_bce", "recon_bce_stderr"), BCE_UNDEFINED)
    return out


ACTIVE_UNITS_KEYS = (
    ResultKey("active_units",
              label="active units",
              caveat=("Latent dimensions whose posterior mean varies with x (covariance above 0.01, "
                      "Burda et al. 2015). Few active units mean the latent space is underused."),
              direction="higher",
              unit="units",
              section="Reconstruction"),
)


@register_metric(
    "active_units",
    keys=ACTIVE_UNITS_KEYS,
    needs={"encode"},
    produces={"active_units": "latent coordinates with Cov_x(E_q[u|x]) > 0.01 (Burda et al. 2015)"},
    higher_is_better={"active_units": True},
    description="number of active latent units (Burda et al. 2015)",
)
def active_units_metric(ctx: EvalContext) -> dict[str, float]:
    x, y = _test_data(ctx)
    return {"active_units": float(active_units(posterior_means(ctx.model, x, y)))}
