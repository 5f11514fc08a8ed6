"""Marginal-likelihood metrics: ELBO's siblings IWAE, AIS and BDMC, and the Parzen window.

Every number is a log-likelihood under one named observation model p(x|z):

- ``test_iwae``, ``test_ais``, ``bdmc_gap`` (and ``test_elbo`` in :mod:`elbo`): the model's
  **own** ``decode``, so within a row ELBO <= IWAE <= log p(x) and AIS is a stochastic lower
  bound on the same log p(x). A model without ``decode`` (a GAN) gets n/a here, and so does a
  decoder whose support does not fit the data (a density on binarized pixels).
- ``test_iwae_shared``, ``test_ais_shared``, ``bdmc_gap_shared``: the **shared family** of Wu
  et al. (2017) around ``generate(z)``: a spherical Gaussian with std ``obs_sigma`` on
  continuous data, a Bernoulli of the mean image with flip probability ``obs_flip`` on
  binarized data; the level is chosen per model by bounded Brent on validation images. This
  is how models without a decoder are compared with those that have one. A model without a
  density encoder (a GAN, the AE) gets an inference network q(z|x) fitted on its own
  simulations (:mod:`genbench.metrics.inference`), fitted once and used by all three: the
  proposal of IWAE, the start of AIS and BDMC, and the validation IWAE that picks the level.

Estimates are in nats per image, higher is better, with the standard error over images;
``*_bpd`` gives bits per dimension beside them. AIS doubles its schedule until two runs
agree within ``ais_tol`` (``ais_converged``); BDMC uses the schedule AIS ended with. The
per-image estimates go to ``per_image.json`` in the run folder, so the report can compare
two models on the same images, paired.
"""

from __future__ import annotations

import math

import torch

from genbench import register_metric
from genbench.contract import capabilities, has_density_encoder, sample_from
from genbench.errors import GenbenchError
from genbench.metrics.ais import HMCConfig, ais_log_likelihood, ais_until_converged
from genbench.metrics.bdmc import bdmc
from genbench.metrics.context import EvalContext
from genbench.metrics.estimates import (  # noqa: F401  (re-exported for callers)
    BPD,
    PER_IMAGE,
    load_per_image,
    mean_stderr,
    own_observation,
    save_per_image,
    with_bpd,
)
from genbench.metrics.inference import LinearGaussianQ, SimulatedMoments, finish, fits, simulate_moments
from genbench.metrics.iwae import iwae_bound, iwae_group
from genbench.metrics.obsmodel import Kind, ObservationModel, choose_noise
from genbench.metrics.parzen import choose_sigma, parzen_log_density
from genbench.metrics.sampling import derive_seed, labels_for, require_finite, seed_from
from genbench.metrics.shards import map_images, map_subsets

SALT_OBS, SALT_IWAE, SALT_AIS, SALT_BDMC, SALT_PARZEN, SALT_INFER = 21, 22, 23, 24, 25, 26
OBS_VAL_K = 100  # importance samples per validation image when choosing the shared noise
NOISE_KEYS = {
    "obs_sigma": "shared family: std of the spherical Gaussian p(x|z) around generate(z), chosen "
                 "by bounded Brent on validation (continuous data)",
    "obs_flip": "shared family: flip probability of the Bernoulli of generate(z), chosen by "
                "bounded Brent on validation (binarized data)",
}  # declared by `ais_shared` (every generator has it); `iwae_shared` and `bdmc_shared` record it too
INFER_KEYS = {
    "infer_seconds_shared": "seconds spent fitting the inference network q(z|x) of a model without "
                            "a density encoder (decoding its simulated codes and the closed-form fit, "
                            "once per evaluation; the noise choice through it is not counted)",
    "infer_log_q_shared": "mean log q(z*|x) of the inference network on fresh pairs z* ~ p(z), "
                          "x ~ p(x|z*) at the chosen noise level, nats per code (higher: a better fit)",
    "infer_gain_shared": "infer_log_q_shared minus the mean log p(z*): nats about z that q reads from x "
                         "(a lower bound on the mutual information I(z; x), Barber & Agakov 2003)",
}  # declared by `ais_shared` beside the noise level; the other shared metrics record them too
OWN = "under the model's own p(x|z) (n/a without decode, or if its support does not fit the data)"
SHARED = ("under the shared family of Wu et al. 2017 (spherical Gaussian, std obs_sigma, on "
          "continuous data; flip-Bernoulli of the mean image, obs_flip, on binarized data)")

# -- shared helpers ------------------------------------------------------------------

def _split(ctx: EvalContext, split: str, n: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    return ctx.data.eval_x(split, n), labels_for(ctx.model, ctx.data.eval_y(split, n))


def _hmc(ctx: EvalContext) -> HMCConfig:
    return HMCConfig(leapfrog=ctx.preset.hmc_leapfrog)


def shared_observation(ctx: EvalContext) -> tuple[ObservationModel, dict[str, float]]:
    """The shared-family p(x|z) of this model and its recorded noise level (and, for a model
    without a density encoder, its inference network's cost and fit).

    The level maximizes the validation log-likelihood, found once per evaluation (reused
    through ``ctx.results``) by bounded Brent in log space. The objective is the IWAE bound
    (k = ``OBS_VAL_K``) through the model's density encoder, or through the inference
    network fitted for a model without one (:func:`shared_inference`); a short AIS run only
    where neither exists (a conditional generator). Each uses fixed noise so that it is a
    deterministic function of the level.
    """
    model = ctx.model
    if "generate" not in capabilities(model):
        raise GenbenchError("n/a: the model has no generate(z) to put an observation model on")
    continuous = ctx.data.info.observation == "gaussian"
    kind, key = ("gaussian", "obs_sigma") if continuous else ("bernoulli", "obs_flip")
    if key not in ctx.results:
        p = ctx.preset
        x, y = _split(ctx, "val", p.obs_val_n)
        seed = seed_from(ctx.generator(SALT_OBS))
        fit = None if has_density_encoder(model) or not _sleeps(model, ctx) else _sleep_fit(ctx, kind)
        if has_density_encoder(model) or fit is not None:

            def objective(obs: ObservationModel) -> float:
                return float(iwae_bound(model, x, y, k=OBS_VAL_K, seed=seed, chunk=p.iwae_chunk,
                                        obs=obs, encoder=None if fit is None else fit.at(float(obs.noise))
                                        ).mean())
        else:
            # short runs: the step size adapts 5x faster than in the reported AIS (1.1 / 0.9)
            hmc = HMCConfig(leapfrog=p.hmc_leapfrog, inc=1.1, dec=0.9)
            track = ctx.tracker("AIS steps choosing the noise")

            def objective(obs: ObservationModel) -> float:
                return float(ais_log_likelihood(model, obs, x, y, chains=max(2, p.ais_chains // 4),
                                                steps=p.obs_val_steps, hmc=hmc, seed=seed,
                                                progress=track)[0].mean())

        ctx.results[key], ctx.results["_obs_evaluations"] = choose_noise(kind, objective)
        if fit is not None:
            _finish_fit(ctx, fit, float(ctx.results[key]))
    noise = float(ctx.results[key])
    return ObservationModel(kind, noise), {key: noise, **_inference_values(ctx)}


# -- the inference network of a model without a density encoder -------------------------

SHARED_Q = "shared"  # ctx.inference's key of the shared family's q(z|x)


def _sleeps(model: torch.nn.Module, ctx: EvalContext) -> bool:
    """Whether an inference network is fitted for the model: it has a prior and a generator
    but no density encoder; a conditional one is left out (its simulations need labels), and
    so are images too wide for a pixel covariance (they anneal from the prior)."""
    return (not has_density_encoder(model) and not getattr(model, "conditional", False)
            and {"prior", "generate"} <= capabilities(model) and fits(math.prod(ctx.data.info.shape)))


def _sleep_fit(ctx: EvalContext, kind: Kind) -> SimulatedMoments:
    ctx.progress(0, 1, "inference network fits")
    fit = simulate_moments(ctx.model, kind, ctx.preset.infer_pairs, seed=seed_from(ctx.generator(SALT_INFER)))
    ctx.progress(1, 1, "inference network fits")
    return fit


def _finish_fit(ctx: EvalContext, fit: SimulatedMoments, level: float) -> None:
    ctx.inference[SHARED_Q] = finish(fit, ctx.model, level,
                                     seed=derive_seed(seed_from(ctx.generator(SALT_INFER)), 1))


def shared_inference(ctx: EvalContext) -> LinearGaussianQ | None:
    """The shared family's q(z|x) of a model without a density encoder, at the chosen level
    (None for a model with one, or none fitted); fitted once, by :func:`shared_observation`."""
    if not _sleeps(ctx.model, ctx):
        return None
    obs, _ = shared_observation(ctx)
    if SHARED_Q not in ctx.inference:  # the level was given (ctx.results), not chosen here
        _finish_fit(ctx, _sleep_fit(ctx, obs.kind), float(obs.noise))
    return ctx.inference[SHARED_Q].encoder


def _inference_values(ctx: EvalContext) -> dict[str, float]:
    fitted = ctx.inference.get(SHARED_Q)
    if fitted is None:
        return {}
    return {"infer_seconds_shared": fitted.seconds, "infer_log_q_shared": fitted.log_q,
            "infer_gain_shared": fitted.log_q - fitted.log_prior}


def _ais_init(ctx: EvalContext, obs: ObservationModel | None = None) -> bool | LinearGaussianQ:
    """Where AIS (and BDMC, with the same start) anneal from: the model's q(z|x) (True), the
    inference network fitted under the shared family ``obs``, or the prior (False)."""
    if ctx.preset.ais_init not in ("prior", "encoder"):
        raise GenbenchError(f"ais_init must be 'prior' or 'encoder', not {ctx.preset.ais_init!r}")
    if ctx.preset.ais_init != "encoder":
        return False
    if has_density_encoder(ctx.model):
        return True
    if obs is None or obs.kind == "decoder":
        return False
    return shared_inference(ctx) or False


def _proposal(ctx: EvalContext, obs: ObservationModel) -> LinearGaussianQ | None:
    """IWAE's proposal: None (the model's encoder) or the fitted inference network."""
    if has_density_encoder(ctx.model) or obs.kind == "decoder":
        return None
    q = shared_inference(ctx)
    if q is None:
        raise GenbenchError("no encoder, and no inference network for a conditional generator: "
                            "add encode(x, y) -> Distribution")
    return q


# -- the three estimators, under a given observation model -----------------------------

def _iwae(ctx: EvalContext, obs: ObservationModel, suffix: str) -> dict[str, float]:
    p, q = ctx.preset, _proposal(ctx, obs)
    n = p.n_eval if q is None or p.infer_iwae_n is None else min(p.n_eval or p.infer_iwae_n, p.infer_iwae_n)
    x, y = _split(ctx, "test", n)
    bound = map_images(iwae_bound, ctx.model, x, y, k=p.iwae_k, seed=seed_from(ctx.generator(SALT_IWAE)),
                       align=iwae_group(p.iwae_k, p.iwae_chunk), chunk=p.iwae_chunk, obs=obs,
                       progress=ctx.tracker("images"), encoder=q)
    save_per_image(ctx, f"test_iwae{suffix}", bound)
    return with_bpd(ctx, f"test_iwae{suffix}", bound)


def _ais(ctx: EvalContext, obs: ObservationModel, suffix: str) -> dict[str, float]:
    p = ctx.preset
    x, y = _split(ctx, "test", p.ais_n)
    res = ais_until_converged(ctx.model, obs, x, y, chains=p.ais_chains, start=p.ais_steps,
                              max_steps=max(p.ais_max_steps, p.ais_steps), tol=p.ais_tol,
                              hmc=_hmc(ctx), seed=seed_from(ctx.generator(SALT_AIS)),
                              from_encoder=_ais_init(ctx, obs),
                              progress=ctx.tracker(f"AIS steps x {p.ais_chains} chains"))
    ctx.results[f"_ais_distributions{suffix}"] = res.distributions
    save_per_image(ctx, f"test_ais{suffix}", res.estimate)
    return {**with_bpd(ctx, f"test_ais{suffix}", res.estimate), f"ais_accept{suffix}": res.accept_rate,
            f"ais_distributions{suffix}": float(res.distributions),
            f"ais_converged{suffix}": float(res.converged), f"ais_tolerance{suffix}": res.tolerance,
            f"ais_from_encoder{suffix}": float(bool(_ais_init(ctx, obs))),
            **_paired_with_iwae(ctx, x, y, obs, res.estimate, suffix)}


def _paired_with_iwae(ctx: EvalContext, x: torch.Tensor, y: torch.Tensor | None, obs: ObservationModel,
                      ais: torch.Tensor, suffix: str) -> dict[str, float]:
    """AIS minus IWAE on AIS's own images, where the model has a density encoder.

    AIS runs on fewer test images than IWAE, so the two headline means differ by which
    images they saw as much as by the estimators (a few nats at quick's 20 images). Both are
    stochastic lower bounds of the same log p(x), and the paired difference on the same images,
    with its own small standard error, is what says whether AIS was run long enough.
    """
    if not has_density_encoder(ctx.model) and (obs.kind == "decoder" or not _sleeps(ctx.model, ctx)):
        return {}
    bound = map_images(iwae_bound, ctx.model, x, y, k=ctx.preset.iwae_k,
                       seed=seed_from(ctx.generator(SALT_IWAE)), align=iwae_group(ctx.preset.iwae_k,
                                                                                  ctx.preset.iwae_chunk),
                       chunk=ctx.preset.iwae_chunk, obs=obs,
                       progress=ctx.tracker("images (IWAE on AIS's images)"), encoder=_proposal(ctx, obs))
    diff, diff_se = mean_stderr(ais.double() - bound)
    return {f"ais_minus_iwae{suffix}": diff, f"ais_minus_iwae{suffix}_stderr": diff_se}


def _bdmc(ctx: EvalContext, obs: ObservationModel, suffix: str) -> dict[str, float]:
    """BDMC with the schedule and start the test AIS ended with (``ais_steps`` if AIS did
    not run). Started from q(z|x), the gap is pessimistic: the encoder meets simulated
    images (the decoder's mean plus its noise) it was not trained on, so forward AIS starts
    farther from the posterior than on test images."""
    p = ctx.preset
    steps = int(ctx.results.get(f"_ais_distributions{suffix}", p.ais_steps))
    y = labels_for(ctx.model, ctx.data.eval_y("test", p.bdmc_n))
    res = map_subsets(bdmc, ctx.model, obs=obs, n=p.bdmc_n, shape=ctx.data.info.shape, chains=p.ais_chains,
               steps=steps, hmc=_hmc(ctx), seed=seed_from(ctx.generator(SALT_BDMC)), y=y,
               progress=ctx.tracker(f"AIS steps x {p.ais_chains} chains, forward + reverse"),
               from_encoder=_ais_init(ctx, obs))
    gap, gap_se = mean_stderr(res.gap)
    return {f"bdmc_gap{suffix}": gap, f"bdmc_gap{suffix}_stderr": gap_se,
            f"bdmc_lower{suffix}": float(res.lower.mean()), f"bdmc_upper{suffix}": float(res.upper.mean()),
            f"bdmc_distributions{suffix}": float(steps)}


# -- own observation model -----------------------------------------------------------

def _ais_keys(suffix: str, which: str) -> dict[str, str]:
    return {
        f"test_ais{suffix}": f"AIS estimate (stochastic lower bound) of log p(x) {which} (log p(x|y), "
                             "true label, for a conditional model), nats/image (Neal 2001; Wu et al. 2017)",
        f"test_ais{suffix}_bpd": f"test_ais{suffix} in {BPD}",
        f"ais_accept{suffix}": "mean HMC acceptance rate",
        f"ais_minus_iwae{suffix}": "AIS minus the IWAE bound on the same test images (paired), nats/image",
        f"ais_distributions{suffix}": "intermediate distributions of the reported AIS run (the schedule "
                                      "doubles from ais_steps up to ais_max_steps)",
        f"ais_converged{suffix}": "1 if the last two AIS runs' means agreed within ais_tolerance, else 0",
        f"ais_tolerance{suffix}": "the agreement asked of two successive AIS runs, nats/image",
        f"ais_from_encoder{suffix}": "1 if AIS annealed from q(z|x) (ais_init=encoder: the model's encoder, "
                                     "or in the shared family the inference network fitted for a model "
                                     "without one), 0 from the prior",
    }


def _bdmc_keys(suffix: str, which: str) -> dict[str, str]:
    return {f"bdmc_gap{suffix}": f"BDMC upper minus lower bound on data simulated from the model {which}, "
                                 "nats/image, with the test AIS's schedule and start (from q(z|x) "
                                 "the gap is pessimistic: the encoder never saw simulated images)",
            f"bdmc_lower{suffix}": "forward AIS on simulated data", f"bdmc_upper{suffix}": "reverse AIS on "
            "simulated data", f"bdmc_distributions{suffix}": "intermediate distributions of both BDMC runs"}


@register_metric(
    "iwae",
    needs={"encode", "decode", "prior", "density_encoder"},
    produces={"test_iwae": f"importance-weighted bound on log p(x) {OWN} (log p(x|y), true label, for a "
                           "conditional model), nats/image (Burda et al. 2015)",
              "test_iwae_bpd": f"test_iwae in {BPD}"},
    higher_is_better={"test_iwae": True, "test_iwae_bpd": False},
    description=f"IWAE bound with preset k importance samples on the test split, {OWN}",
)
def iwae_metric(ctx: EvalContext) -> dict[str, float]:
    return _iwae(ctx, own_observation(ctx), "")


@register_metric(
    "ais",
    needs={"prior", "decode"},
    produces=_ais_keys("", OWN),
    higher_is_better={"test_ais": True, "test_ais_bpd": False},
    description=f"annealed importance sampling with HMC on the test split, {OWN}; from q(z|x) where "
                "there is a density encoder (ais_init), schedule doubled until converged",
)
def ais_metric(ctx: EvalContext) -> dict[str, float]:
    return _ais(ctx, own_observation(ctx), "")


@register_metric(
    "bdmc",
    needs={"prior", "decode"},
    produces=_bdmc_keys("", OWN),
    higher_is_better={"bdmc_gap": False},
    description=f"bidirectional Monte Carlo gap of the test AIS's settings (Grosse et al. 2015), {OWN}",
)
def bdmc_metric(ctx: EvalContext) -> dict[str, float]:
    return _bdmc(ctx, own_observation(ctx), "")


# -- shared family -------------------------------------------------------------------

@register_metric(
    "iwae_shared",
    # generate, not decode: a generator without p(x|z) (VAE-GAN) is scored too; no encoder
    # needed: a model without a density encoder is scored through its inference network
    needs={"generate", "prior"},
    produces={"test_iwae_shared": f"importance-weighted bound on log p(x) {SHARED}, nats/image "
                                  "(through the inference network on the first infer_iwae_n test images "
                                  "for a model without a density encoder)",
              "test_iwae_shared_bpd": f"test_iwae_shared in {BPD}"},
    higher_is_better={"test_iwae_shared": True, "test_iwae_shared_bpd": False},
    description=f"IWAE bound on the test split {SHARED}, through the model's q(z|x) or, "
                "without one, the inference network fitted on its own simulations",
)
def iwae_shared_metric(ctx: EvalContext) -> dict[str, float]:
    obs, noise = shared_observation(ctx)
    return {**_iwae(ctx, obs, "_shared"), **noise}


@register_metric(
    "ais_shared",
    needs={"prior", "generate"},
    produces={**_ais_keys("_shared", SHARED), **NOISE_KEYS, **INFER_KEYS},
    higher_is_better={"test_ais_shared": True, "test_ais_shared_bpd": False},
    description=f"AIS with HMC on the test split {SHARED}: how GANs get a log-likelihood",
)
def ais_shared_metric(ctx: EvalContext) -> dict[str, float]:
    obs, noise = shared_observation(ctx)
    return {**_ais(ctx, obs, "_shared"), **noise}


@register_metric(
    "bdmc_shared",
    needs={"prior", "generate"},
    produces=_bdmc_keys("_shared", SHARED),
    higher_is_better={"bdmc_gap_shared": False},
    description=f"BDMC gap of the shared-family AIS settings (Grosse et al. 2015), {SHARED}",
)
def bdmc_shared_metric(ctx: EvalContext) -> dict[str, float]:
    obs, noise = shared_observation(ctx)
    return {**_bdmc(ctx, obs, "_shared"), **noise}


@torch.no_grad()
def model_samples(model: torch.nn.Module, n: int, gen: torch.Generator, batch: int = 500) -> torch.Tensor:
    """n samples from the model, drawn ``batch`` at a time from one generator."""
    return require_finite(
        torch.cat([sample_from(model, min(batch, n - i), gen) for i in range(0, n, batch)]))


@register_metric(
    "parzen",
    needs={"sample"},
    produces={"parzen": "Parzen-window log-likelihood, nats/image (legacy; unreliable in high dimension)",
              "parzen_sigma": "window width chosen on validation"},
    higher_is_better={"parzen": True},
    description="Parzen window of Goodfellow et al. (2014) on continuous data: a legacy number, "
                "reported for old papers only; it can rank models opposite to AIS (Theis et al. "
                "2016; Wu et al. 2017)",
)
def parzen_metric(ctx: EvalContext) -> dict[str, float]:
    if ctx.data.info.observation != "gaussian":
        # a Gaussian window is a density: on {0, 1} pixels it is no probability of the image
        raise GenbenchError("continuous data only (a density; use the continuous variant)")
    p = ctx.preset
    centers = model_samples(ctx.model, p.parzen_samples, ctx.generator(SALT_PARZEN))
    sigma, _ = choose_sigma(ctx.data.eval_x("val", p.parzen_n), centers)
    test = parzen_log_density(ctx.data.eval_x("test", p.parzen_n), centers, (sigma,))[0]
    mean, se = mean_stderr(test)
    return {"parzen": mean, "parzen_stderr": se, "parzen_sigma": sigma}
