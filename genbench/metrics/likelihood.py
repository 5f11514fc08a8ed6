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
agree within ``ais_tol`` (``ais_converged``) and pools the runs; BDMC, declared to run after
AIS, is handed AIS's start, schedules and observation model and certifies the number
(``ais_certified``: gap + 2 s.e. <= ``certify_tol``; :mod:`genbench.metrics.certify`). At the
quick preset a pilot BDMC first stops AIS early where certification is out of reach. Where
the shared family chose the model's own Bernoulli decoder, the shared metrics reuse the own
results. The per-image estimates go to ``per_image.json`` in the run folder, so the report
can compare two models on the same images, paired.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import torch

from genbench.contract import capabilities, has_density_encoder, sample_from
from genbench.errors import GenbenchError
from genbench.metrics.ais import HMCConfig, ais_log_likelihood, ais_until_converged
from genbench.metrics.bdmc import BDMCResult, bdmc, bdmc_until_certified
from genbench.metrics.certify import (
    AISRun,
    BDMCRun,
    Pilot,
    certified,
    gap_floor,
    pilot_schedules,
    pilot_verdict,
    schedule_past,
    shared_is_own,
)
from genbench.metrics.context import EvalContext, MetricResult
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
from genbench.metrics.obsmodel import FLIP_BOUNDS, Kind, ObservationModel, choose_noise
from genbench.metrics.parzen import choose_sigma, parzen_log_density
from genbench.metrics.sampling import Encoder, derive_seed, labels_for, require_finite, seed_from
from genbench.metrics.shards import map_images, map_subsets
from genbench.registry import Direction, ResultKey, own_and_shared, register_metric
from genbench.store import read_json, write_json

SALT_OBS, SALT_IWAE, SALT_AIS, SALT_BDMC, SALT_PARZEN, SALT_PILOT, SALT_INFER = 21, 22, 23, 24, 25, 26, 27
OBS_VAL_K = 100  # importance samples per validation image when choosing the shared noise
NOISE_KEYS = {
    "obs_sigma": "shared family: std of the spherical Gaussian p(x|z) around generate(z), chosen "
                 "by bounded Brent on validation (continuous data)",
    "obs_flip": "shared family: flip probability of the Bernoulli of generate(z), chosen by "
                "bounded Brent on validation (binarized data)",
    "latent_dims": "dimensions of the latent z whose posterior AIS anneals",
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
    return HMCConfig(leapfrog=ctx.preset.hmc_leapfrog, persistence=ctx.preset.hmc_persistence)


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
            hmc = dataclasses.replace(_hmc(ctx), inc=1.1, dec=0.9)
            track = ctx.tracker("AIS steps choosing the noise")

            def objective(obs: ObservationModel) -> float:
                return float(ais_log_likelihood(model, obs, x, y, chains=max(2, p.ais_chains // 4),
                                                steps=p.obs_val_steps, hmc=hmc, seed=seed,
                                                progress=track)[0].mean())

        ctx.results[key], ctx.results["_obs_evaluations"] = choose_noise(kind, objective)
        if fit is not None:
            _finish_fit(ctx, fit, float(ctx.results[key]))
    noise = float(ctx.results[key])
    latent = float(model.prior().event_shape[-1])  # Wu et al. compare at matched sizes (10, 50)
    return ObservationModel(kind, noise), {key: noise, "latent_dims": latent, **_inference_values(ctx)}


# -- the inference network of a model without a density encoder -------------------------

SHARED_Q = "shared"  # ctx.inference's key of the shared family's q(z|x)


def _sleeps(model: torch.nn.Module, ctx: EvalContext) -> bool:
    """Whether an inference network is fitted for the model: it has a prior and a generator
    but no density encoder; a conditional one is left out (its simulations need labels), and
    so are images too wide for a pixel covariance (they anneal from the prior)."""
    return (not has_density_encoder(model) and not getattr(model, "conditional", False)
            and {"prior", "generate"} <= capabilities(model) and fits(math.prod(ctx.data.info.shape)))


def _sleep_fit(ctx: EvalContext, kind: Kind) -> SimulatedMoments:
    """The model's simulated moments under ``kind``, simulated once per evaluation (the own
    decoder's start and the shared family's are refits of the same moments)."""
    if kind not in ctx.simulations:
        ctx.progress(0, 1, "inference network fits")
        ctx.simulations[kind] = simulate_moments(ctx.model, kind, ctx.preset.infer_pairs,
                                                 seed=seed_from(ctx.generator(SALT_INFER)))
        ctx.progress(1, 1, "inference network fits")
    return ctx.simulations[kind]


def _finish_fit(ctx: EvalContext, fit: SimulatedMoments, level: float, name: str = SHARED_Q) -> None:
    ctx.inference[name] = finish(fit, ctx.model, level,
                                 seed=derive_seed(seed_from(ctx.generator(SALT_INFER)), 1))


OWN_Q = "own"  # ctx.inference's key of the own decoder's q(z|x)


def own_inference(ctx: EvalContext) -> LinearGaussianQ | None:
    """q(z|x) for AIS under the model's own Bernoulli decoder, for a model that has one but
    no density encoder (the AE): the inference network refitted at the flip's lower bound,
    where the flip-Bernoulli of ``generate(z)`` is that decoder to within 2 x 1e-6 per pixel.
    Any start leaves AIS exact; this one only brings it near the posterior, as it does for
    the shared family. None on continuous data (the own Gaussian's level is the model's)."""
    if not _sleeps(ctx.model, ctx) or ctx.data.info.observation == "gaussian":
        return None
    if OWN_Q not in ctx.inference:
        _finish_fit(ctx, _sleep_fit(ctx, "bernoulli"), FLIP_BOUNDS[0], OWN_Q)
    return ctx.inference[OWN_Q].encoder


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
    if obs is None:
        return False
    if obs.kind == "decoder":
        return own_inference(ctx) or False
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


def _pilot(ctx: EvalContext, obs: ObservationModel, from_encoder: bool | Encoder) -> Pilot | None:
    """BDMC on ``pilot_n`` simulated images at half of ``pilot_steps``, at ``pilot_steps``,
    then at doubled schedules up to AIS's first (quick: 125, 250, 500), stopping at the first
    look that decides (:func:`genbench.metrics.certify.pilot_verdict`); None where the
    preset runs no pilot.

    At quick it costs 2 x pilot_n chain-steps per distribution looked at: 3,000 when the look
    at 250 decides (the VAE family, certified there), 7,000 when it takes the look at 500,
    against AIS's 1000 x 20 plus BDMC's 2 x 1000 x 16 (52,000) that a model it stops is
    spared. Where the last look is at the schedule AIS then runs, its gap is that AIS's
    certificate (:func:`_bdmc`), so the look is not paid twice.
    """
    p = ctx.preset
    schedules = pilot_schedules(p.pilot_steps, p.ais_steps)
    if not schedules:
        return None
    most = max(p.ais_max_steps, p.ais_steps)
    looks: list[tuple[int, float, float]] = []
    for i, steps in enumerate(schedules):
        res = pilot_look(ctx, obs, from_encoder, steps)
        looks.append((steps, *mean_stderr(res.gap)))
        # the full BDMC's mean over bdmc_n images is at least these images' gaps summed over bdmc_n
        verdict = None if i == 0 else pilot_verdict(looks, i == len(schedules) - 1,
                                                    gap_floor(res.gap, p.bdmc_n), p.certify_tol, most)
        if verdict is not None:
            decay, needed = verdict
            _, gap, se = looks[-1]
            return Pilot(steps, len(res.gap), gap, se, float(res.lower.mean()), float(res.upper.mean()),
                         decay, needed, needed <= most)
    raise AssertionError("unreachable: the last look always decides")


def pilot_look(ctx: EvalContext, obs: ObservationModel, from_encoder: bool | Encoder, steps: int
               ) -> BDMCResult:
    """One look of the pilot: BDMC with ``steps`` distributions on its ``pilot_n`` simulated
    images, the same images, noise and start at every schedule (and in
    ``benchmarks/bench_pilot.py``, which looks at every schedule to show what each says)."""
    p = ctx.preset
    n = min(p.pilot_n, p.bdmc_n)
    return map_subsets(bdmc, ctx.model, n, obs=obs, shape=ctx.data.info.shape, chains=p.ais_chains,
                       steps=steps, hmc=_hmc(ctx), seed=seed_from(ctx.generator(SALT_PILOT)),
                       y=labels_for(ctx.model, ctx.data.eval_y("test", n)),
                       progress=ctx.tracker(f"pilot ({steps} distributions): AIS steps x "
                                            f"{p.ais_chains} chains, forward + reverse"),
                       from_encoder=from_encoder)


def _pilot_values(pilot: Pilot | None, suffix: str) -> dict[str, float]:
    if pilot is None:  # said outright, so that a re-evaluation never keeps an old pilot's verdict
        return {f"ais_pilot_stopped{suffix}": 0.0}
    return {f"ais_pilot_gap{suffix}": pilot.gap, f"ais_pilot_gap{suffix}_stderr": pilot.stderr,
            f"ais_pilot_distributions{suffix}": float(pilot.distributions),
            f"ais_pilot_decay{suffix}": pilot.decay,
            f"ais_needed_distributions{suffix}": float(pilot.needed),
            f"ais_pilot_stopped{suffix}": float(not pilot.reachable)}


def _ais(ctx: EvalContext, obs: ObservationModel, suffix: str) -> MetricResult:
    """AIS on the test images, handing BDMC the run it certifies (:class:`AISRun`).

    Without a pilot the schedule doubles from ``ais_steps`` until two runs agree (the paper
    protocol). With one, the certificate drives it and AIS runs once: at the pilot's last
    schedule where the pilot judges certification unreachable (not converged, uncertified,
    with the pilot's gap at that very schedule); at ``ais_steps`` where the pilot's gap is
    certified already; else at the first doubling of ``ais_steps`` past the pilot's last look
    that reaches the distributions it said are needed (quick: 1,000), which BDMC then
    certifies or not. Agreement between runs is a weaker claim than the certificate, and the
    shorter run it would take costs a third of the doubling at quick. A number BDMC does
    not certify is then flagged not converged (one run agrees with nothing).
    """
    p = ctx.preset
    x, y = _split(ctx, "test", p.ais_n)
    from_encoder = _ais_init(ctx, obs)
    pilot = _pilot(ctx, obs, from_encoder)
    start, most = p.ais_steps, max(p.ais_max_steps, p.ais_steps)
    if pilot is not None and not pilot.reachable:
        start = most = pilot.distributions
    elif pilot is not None and certified(pilot.gap, pilot.stderr, p.certify_tol):
        most = start
    elif pilot is not None:
        start = most = schedule_past(pilot, start, most)
    res = ais_until_converged(ctx.model, obs, x, y, chains=p.ais_chains, start=start,
                              max_steps=most, tol=p.ais_tol,
                              hmc=_hmc(ctx), seed=seed_from(ctx.generator(SALT_AIS)),
                              from_encoder=from_encoder,
                              progress=ctx.tracker(f"AIS steps x {p.ais_chains} chains"))
    save_per_image(ctx, f"test_ais{suffix}", res.estimate)
    values = {**with_bpd(ctx, f"test_ais{suffix}", res.estimate), f"ais_accept{suffix}": res.accept_rate,
              f"ais_distributions{suffix}": float(res.distributions),
              f"ais_converged{suffix}": float(res.converged), f"ais_tolerance{suffix}": res.tolerance,
              f"ais_from_encoder{suffix}": float(bool(from_encoder)),
              f"ais_runs{suffix}": float(len(res.means)),
              **_pilot_values(pilot, suffix),
              **_paired_with_iwae(ctx, x, y, obs, res.estimate, suffix)}
    return MetricResult(values, AISRun(obs, res.schedules, from_encoder, pilot))


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


def _bdmc(ctx: EvalContext, obs: ObservationModel, suffix: str, run: AISRun | None) -> dict[str, float]:
    """BDMC with the start, schedules and observation model of the AIS it certifies (``run``,
    handed over by the runner; without it, the preset's ``ais_steps`` from the preset's start
    and no certificate recorded), in rounds of simulated images that stop once the gap is
    certified or cannot be (:func:`bdmc_until_certified`). Where AIS ran once at the pilot's
    last schedule (the pilot stopped it, or certified it at AIS's first schedule), the
    pilot's gap is the certificate's answer: it was measured at the schedule AIS then ran,
    from the same start, under the same observation model, on as many images as BDMC's
    first round.

    Started from q(z|x), the gap is pessimistic: the encoder meets simulated images (the
    decoder's mean plus its noise) it was not trained on, so forward AIS starts farther from
    the posterior than on test images."""
    p = ctx.preset
    tol = {f"certify_tolerance{suffix}": p.certify_tol}
    if run is not None and (pilot := run.pilot) is not None and run.schedules == (pilot.distributions,):
        return {f"bdmc_gap{suffix}": pilot.gap, f"bdmc_gap{suffix}_stderr": pilot.stderr,
                f"bdmc_lower{suffix}": pilot.lower, f"bdmc_upper{suffix}": pilot.upper,
                f"bdmc_distributions{suffix}": float(pilot.distributions),
                f"bdmc_images{suffix}": float(pilot.images),
                f"ais_certified{suffix}": float(certified(pilot.gap, pilot.stderr, p.certify_tol)), **tol}
    if run is not None:
        obs = run.obs
    steps = run.schedules[-1] if run is not None else p.ais_steps
    y = labels_for(ctx.model, ctx.data.eval_y("test", p.bdmc_n))
    cert = bdmc_until_certified(
        ctx.model, obs, n=p.bdmc_n, first=p.bdmc_first, tol=p.certify_tol, shape=ctx.data.info.shape,
        chains=p.ais_chains, steps=steps, hmc=_hmc(ctx), seed=seed_from(ctx.generator(SALT_BDMC)), y=y,
        from_encoder=run.from_encoder if run is not None else _ais_init(ctx, obs),
        pooled_with=run.schedules[:-1] if run is not None else (),
        progress=ctx.tracker(f"AIS steps x {p.ais_chains} chains x images, forward + reverse"))
    res = cert.result
    out = {f"bdmc_gap{suffix}": cert.gap, f"bdmc_gap{suffix}_stderr": cert.stderr,
           f"bdmc_lower{suffix}": float(res.lower.mean()), f"bdmc_upper{suffix}": float(res.upper.mean()),
           f"bdmc_distributions{suffix}": float(steps), f"bdmc_images{suffix}": float(cert.images), **tol}
    if run is not None:
        out[f"ais_certified{suffix}"] = float(certified(cert.gap, cert.stderr, p.certify_tol))
    return out


# -- reuse: the shared family's member that is the model's own decoder ----------------

def _own_is_shared(ctx: EvalContext, obs: ObservationModel) -> bool:
    """Whether the shared family chose the model's own Bernoulli decoder (see
    :func:`genbench.metrics.certify.shared_is_own`), so own-decoder results stand for it."""
    try:
        own = own_observation(ctx)
    except GenbenchError:
        return False
    return shared_is_own(ctx.model, own, obs, labels_for(ctx.model, ctx.data.eval_y("test", 4)))


def _as_shared(values: dict[str, float], own_keys: dict[str, str], shared_keys: dict[str, str]
               ) -> dict[str, float]:
    """Own-decoder values under their shared-family names (with their ``_stderr``s)."""
    names = dict(zip(own_keys, shared_keys, strict=True))
    out = {}
    for key, value in values.items():
        base = key.removesuffix("_stderr")
        if base in names:
            out[names[base] + key[len(base):]] = value
    return out


def _copy_per_image(ctx: EvalContext, source: str, target: str) -> None:
    if ctx.run_dir is None:
        return
    path = Path(ctx.run_dir) / PER_IMAGE
    data = read_json(path)
    if source in data:
        data[target] = data[source]
        write_json(path, data)


# -- own observation model -----------------------------------------------------------

def _ais_keys(suffix: str, which: str) -> dict[str, str]:
    return {
        f"test_ais{suffix}": f"AIS estimate (stochastic lower bound) of log p(x) {which} (log p(x|y), "
                             "true label, for a conditional model), nats/image (Neal 2001; Wu et al. 2017)",
        f"test_ais{suffix}_bpd": f"test_ais{suffix} in {BPD}",
        f"ais_accept{suffix}": "mean HMC acceptance rate",
        f"ais_minus_iwae{suffix}": "AIS minus the IWAE bound on the same test images (paired), nats/image",
        f"ais_distributions{suffix}": "intermediate distributions of the longest AIS run (the schedule "
                                      "doubles from ais_steps up to ais_max_steps)",
        f"ais_converged{suffix}": "1 if the last two AIS runs' means agreed within ais_tolerance, else 0",
        f"ais_tolerance{suffix}": "the agreement asked of two successive AIS runs, nats/image",
        f"ais_from_encoder{suffix}": "1 if AIS annealed from q(z|x) (ais_init=encoder: the model's encoder, "
                                     "or in the shared family the inference network fitted for a model "
                                     "without one), 0 from the prior",
        f"ais_runs{suffix}": "AIS runs of the doubling, pooled into the estimate (weights proportional to "
                             "their distributions)",
        f"ais_pilot_gap{suffix}": "the pilot's BDMC gap at its deciding look (pilot_n simulated images), "
                                  "nats/image",
        f"ais_pilot_distributions{suffix}": "distributions of the pilot's deciding look (it looks at half "
                                            "pilot_steps, pilot_steps, then doubled up to ais_steps)",
        f"ais_pilot_decay{suffix}": "the exponent a of gap ~ T^-a the pilot extrapolated with: 1 (1/T) at "
                                    "its look at ais_steps; at an earlier look the decay between its two "
                                    "newest looks, kept within 3 to 4 (optimistic: certify.MIN_DECAY, "
                                    "MAX_DECAY)",
        f"ais_needed_distributions{suffix}": "distributions the pilot's gap, extrapolated as gap ~ T^-a "
                                             "(ais_pilot_decay), needs to reach certify_tolerance",
        f"ais_pilot_stopped{suffix}": "1 if the pilot judged certification unreachable within "
                                      "ais_max_steps: AIS ran once at the pilot's last schedule",
    }


def _bdmc_keys(suffix: str, which: str) -> dict[str, str]:
    return {f"bdmc_gap{suffix}": f"BDMC upper minus lower bound on data simulated from the model {which}, "
                                 "nats/image, with the test AIS's schedule and start (from q(z|x) "
                                 "the gap is pessimistic: the encoder never saw simulated images)",
            f"bdmc_lower{suffix}": "forward AIS on simulated data", f"bdmc_upper{suffix}": "reverse AIS on "
            "simulated data", f"bdmc_distributions{suffix}": "intermediate distributions of both BDMC runs",
            f"bdmc_images{suffix}": "simulated images annealed (bdmc_first, doubled up to bdmc_n while the "
                                    "certificate was still open)",
            f"ais_certified{suffix}": f"1 if test_ais{suffix} is certified: its BDMC gap + 2 s.e. is at most "
                                      f"certify_tolerance{suffix}, else 0",
            f"certify_tolerance{suffix}": "the BDMC gap (+ 2 s.e.) a certified AIS may have, nats/image"}


def _from_own(name: str) -> dict[str, str]:
    return {f"{name}_from_own": "1 if the shared family's chosen member is the model's own Bernoulli decoder "
                                "(flip at its lower bound) and the own-decoder numbers were reused, else 0"}


# -- result keys: each declared once, under the model's own p(x|z) and the shared family ------
IWAE_KEY, IWAE_SHARED_KEY = own_and_shared(
    ResultKey("test_iwae",
              label="IWAE",
              caveat=("The importance-weighted bound of Burda et al. (2015): log of the mean of k "
                      "weights p(x, z)/q(z|x); it tightens toward log p(x) as k grows. It needs a "
                      "density encoder, so a GAN or a point-mass AE gets n/a."),
              direction="higher",
              unit="nats/image",
              section="Likelihood",
              stderr=True,
              bpd=True,
              headline=5,
              estimates="log p(x)",
              kind="bound",
              stands_for=3,
              paired=1,
              best_text="IWAE bound (own p(x|z))",
              observation="model"),
    shared_caveat=("The IWAE bound with the model's encoder as proposal, but p(x|z) replaced by the"
                   " shared family around generate(z). It lets a model without a decoder of its own"
                   " (VAE-GAN) be bounded; it needs a density encoder."),
    shared_stands_for=5, shared_paired=4, shared_best_text="IWAE bound under the shared family")
AIS_KEY, AIS_SHARED_KEY = own_and_shared(
    ResultKey("test_ais",
              label="AIS",
              caveat=("Annealed importance sampling (Neal 2001) with HMC from q(z|x) (or the prior, "
                      "without an encoder) to the posterior under the model's own p(x|z). Its schedule"
                      " doubles until two runs agree within ais_tolerance (one run where the pilot "
                      "certified already); only a number BDMC certified is ranked. A stochastic lower"
                      " bound whose tightness the BDMC gap probes."),
              direction="higher",
              unit="nats/image",
              section="Likelihood",
              stderr=True,
              bpd=True,
              converged="ais_converged",
              certified="ais_certified",
              headline=2,
              estimates="log p(x)",
              kind="estimate",
              stands_for=2,
              paired=2,
              best_text="AIS estimate of the log-likelihood (own p(x|z))",
              observation="model"),
    shared_caveat=("AIS under the shared family of Wu et al. (2017): how a GAN gets a "
                   "log-likelihood at all. It ranks generators, not their own observation models, "
                   "and depends on the noise level chosen on validation."), shared_headline=3,
    shared_stands_for=4, shared_paired=5,
    shared_best_text="log-likelihood under the shared family (AIS)")
AIS_MINUS_IWAE_KEY, AIS_MINUS_IWAE_SHARED_KEY = own_and_shared(
    ResultKey("ais_minus_iwae",
              label="AIS - IWAE (paired)",
              caveat=("AIS minus the IWAE bound on the same test images (AIS's, fewer than IWAE's), "
                      "with the standard error of the paired difference. Both are lower bounds on log "
                      "p(x), so a clearly negative value says AIS was run too short for the model."),
              direction="unranked",
              unit="nats/image",
              section="Likelihood",
              stderr=True,
              observation="model"),
    shared_caveat="AIS minus IWAE under the shared family, paired on AIS's images.")
BDMC_KEY, BDMC_SHARED_KEY = own_and_shared(
    ResultKey("bdmc_gap",
              label="BDMC gap",
              caveat=("Bidirectional Monte Carlo (Grosse et al. 2015): on data simulated from the "
                      "model, the gap between reverse (upper) and forward (lower) AIS. A small gap "
                      "says the AIS number is trustworthy, but only on simulated data, not on the test"
                      " set itself."),
              direction="lower",
              unit="nats/image",
              section="Likelihood",
              stderr=True,
              observation="model"),
    shared_caveat=("The BDMC gap of the shared-family AIS on data simulated from the generator plus"
                   " the shared noise; large gaps mean the AIS number is loose."))
NOISE_RESULT_KEYS = (
    ResultKey("obs_sigma",
              label="obs. sigma",
              caveat=("The std of the shared spherical Gaussian, maximizing the validation likelihood "
                      "(bounded Brent in log space). Smaller means the model's mean images fit closer."),
              direction="unranked",
              section="Likelihood, shared family"),
    ResultKey("obs_flip",
              label="obs. flip",
              caveat=("The flip probability of the shared Bernoulli on binarized data, chosen like "
                      "obs_sigma."),
              direction="unranked",
              section="Likelihood, shared family"),
    ResultKey("latent_dims",
              label="latent dims",  # its one line is NOISE_KEYS'
              caveat=("The size of z. A likelihood by AIS is harder to certify the larger z and the "
                      "sharper its posterior, and Wu et al. (2017) compare VAEs and GANs at matched "
                      "sizes (10 and 50): read the likelihoods beside it."),
              direction="unranked",
              unit="count",
              section="Likelihood, shared family"),
)
# -- bookkeeping of the AIS, its pilot, BDMC and the inference network: own and shared ------
AIS_SECTION, BDMC_SECTION = "AIS diagnostics", "BDMC certificates"


def _diagnostic(name: str, label: str, unit: str = "", *, flag: bool = False,
                direction: Direction = "unranked",
                observation: str = "", section: str = AIS_SECTION) -> tuple[ResultKey, ResultKey]:
    """A recorded value that says how an estimate was made, not how good the model is: in its
    diagnostics section, own and shared, a 0/1 ``flag`` counted over seeds; the glossary reads
    the line its metric records it with."""
    own, shared = ({**_ais_keys(suffix, which), **_bdmc_keys(suffix, which)}
                   for suffix, which in (("", OWN), ("_shared", SHARED)))
    return own_and_shared(ResultKey(name, label=label, unit=unit, flag=flag, direction=direction,
                                    observation=observation, section=section, caveat=own[name]),
                          shared_caveat=shared[f"{name}_shared"], shared_section=f"{section}, shared family")


AIS_DIAGNOSTICS = (
    _diagnostic("ais_accept", "HMC acceptance", "fraction", observation="model"),
    _diagnostic("ais_distributions", "AIS distributions", "count"),
    _diagnostic("ais_runs", "AIS runs pooled", "count"),
    _diagnostic("ais_converged", "AIS converged", flag=True),
    _diagnostic("ais_tolerance", "AIS tolerance", "nats/image"),
    _diagnostic("ais_from_encoder", "AIS from encoder", flag=True),
    _diagnostic("ais_pilot_gap", "pilot gap", "nats/image"),
    _diagnostic("ais_pilot_distributions", "pilot distributions", "count"),
    _diagnostic("ais_pilot_decay", "pilot decay"),
    _diagnostic("ais_needed_distributions", "needed distributions", "count"),
    _diagnostic("ais_pilot_stopped", "pilot stopped", flag=True),
)
BDMC_DIAGNOSTICS = (
    _diagnostic("bdmc_lower", "BDMC forward AIS", "nats/image", observation="model", section=BDMC_SECTION),
    _diagnostic("bdmc_upper", "BDMC reverse AIS", "nats/image", observation="model", section=BDMC_SECTION),
    _diagnostic("bdmc_distributions", "BDMC distributions", "count", observation="model",
                section=BDMC_SECTION),
    _diagnostic("bdmc_images", "BDMC images", "count", observation="model", section=BDMC_SECTION),
    _diagnostic("ais_certified", "AIS certified", flag=True, section=BDMC_SECTION),
    _diagnostic("certify_tolerance", "certify tolerance", "nats/image", section=BDMC_SECTION),
)
SHARED_AIS_SECTION, SHARED_BDMC_SECTION = f"{AIS_SECTION}, shared family", f"{BDMC_SECTION}, shared family"
INFER_RESULT_KEYS = tuple(
    ResultKey(name, label=label, caveat=INFER_KEYS[name], unit=unit, direction=direction,
              section=SHARED_AIS_SECTION)
    for name, label, unit, direction in (
        ("infer_seconds_shared", "inference network (s)", "seconds", "unranked"),
        ("infer_log_q_shared", "inference log q", "nats/code", "higher"),
        ("infer_gain_shared", "inference gain", "nats/code", "higher")))
FROM_OWN_KEYS = {  # the shared family's member is the model's own decoder: its numbers reused
    metric: ResultKey(f"{metric}_from_own", label=label, caveat=_from_own(metric)[f"{metric}_from_own"],
                      flag=True, section=section, observation=observation)
    for metric, label, section, observation in (
        ("iwae_shared", "IWAE reused own", SHARED_AIS_SECTION, ""),
        ("ais_shared", "AIS reused own", SHARED_AIS_SECTION, ""),
        ("bdmc_shared", "BDMC reused own", SHARED_BDMC_SECTION, "shared"))}
PARZEN_SIGMA_KEY = ResultKey("parzen_sigma", label="Parzen sigma", section="Likelihood, shared family",
                             caveat="The width of the Parzen window, chosen on validation.")
PARZEN_KEY = ResultKey("parzen",
                       label="Parzen",
                       caveat=("A Gaussian kernel density estimate on model samples (Goodfellow et al. "
                               "2014), kept as the legacy baseline. It is badly biased in 784 dimensions: "
                               "Wu et al. (2017) show it ranks models in the wrong order, so never read it "
                               "as a likelihood."),
                       direction="higher",
                       unit="nats/image",
                       section="Likelihood, shared family",
                       stderr=True,
                       estimates="log p(x)",
                       kind="legacy",
                       observation="parzen window")


@register_metric(
    "iwae",
    keys=(IWAE_KEY,),
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
    keys=(AIS_KEY, AIS_MINUS_IWAE_KEY, *(own for own, _ in AIS_DIAGNOSTICS)),
    needs={"prior", "decode"},
    produces=_ais_keys("", OWN),
    higher_is_better={"test_ais": True, "test_ais_bpd": False},
    description=f"annealed importance sampling with HMC on the test split, {OWN}; from q(z|x) where "
                "there is a density encoder (ais_init), schedule doubled until converged",
)
def ais_metric(ctx: EvalContext) -> MetricResult:
    return _ais(ctx, own_observation(ctx), "")


@register_metric(
    "bdmc",
    keys=(BDMC_KEY, *(own for own, _ in BDMC_DIAGNOSTICS)),
    needs={"prior", "decode"},
    produces=_bdmc_keys("", OWN),
    higher_is_better={"bdmc_gap": False},
    description=f"bidirectional Monte Carlo gap of the test AIS's settings (Grosse et al. 2015), {OWN}; "
                "certifies the AIS when the gap is within certify_tol",
    after=("ais",),
)
def bdmc_metric(ctx: EvalContext) -> MetricResult:
    run = ctx.upstream_detail("ais", AISRun)
    return MetricResult(_bdmc(ctx, own_observation(ctx), "", run), BDMCRun())


# -- shared family -------------------------------------------------------------------

@register_metric(
    "iwae_shared",
    keys=(IWAE_SHARED_KEY, FROM_OWN_KEYS["iwae_shared"]),
    # generate, not decode: a generator without p(x|z) (VAE-GAN) is scored too; no encoder
    # needed: a model without a density encoder is scored through its inference network
    needs={"generate", "prior"},
    produces={"test_iwae_shared": f"importance-weighted bound on log p(x) {SHARED}, nats/image "
                                  "(through the inference network on the first infer_iwae_n test images "
                                  "for a model without a density encoder)",
              "test_iwae_shared_bpd": f"test_iwae_shared in {BPD}", **_from_own("iwae_shared")},
    higher_is_better={"test_iwae_shared": True, "test_iwae_shared_bpd": False},
    description=f"IWAE bound on the test split {SHARED}, through the model's q(z|x) or, "
                "without one, the inference network fitted on its own simulations",
    after=("iwae",),
)
def iwae_shared_metric(ctx: EvalContext) -> dict[str, float]:
    obs, noise = shared_observation(ctx)
    own = ctx.upstream.get("iwae")
    if own is not None and _own_is_shared(ctx, obs):
        _copy_per_image(ctx, "test_iwae", "test_iwae_shared")
        return {**_as_shared(own.values, {"test_iwae": "", "test_iwae_bpd": ""},
                             {"test_iwae_shared": "", "test_iwae_shared_bpd": ""}),
                "iwae_shared_from_own": 1.0, **noise}
    return {**_iwae(ctx, obs, "_shared"), "iwae_shared_from_own": 0.0, **noise}


@register_metric(
    "ais_shared",
    keys=(AIS_SHARED_KEY, AIS_MINUS_IWAE_SHARED_KEY, *NOISE_RESULT_KEYS,
          *(shared for _, shared in AIS_DIAGNOSTICS), *INFER_RESULT_KEYS, FROM_OWN_KEYS["ais_shared"]),
    needs={"prior", "generate"},
    produces={**_ais_keys("_shared", SHARED), **NOISE_KEYS, **INFER_KEYS, **_from_own("ais_shared")},
    higher_is_better={"test_ais_shared": True, "test_ais_shared_bpd": False},
    description=f"AIS with HMC on the test split {SHARED}: how GANs get a log-likelihood",
    after=("ais",),
)
def ais_shared_metric(ctx: EvalContext) -> MetricResult:
    obs, noise = shared_observation(ctx)
    own, run = ctx.upstream.get("ais"), ctx.upstream_detail("ais", AISRun)
    if own is not None and run is not None and _own_is_shared(ctx, obs):
        _copy_per_image(ctx, "test_ais", "test_ais_shared")
        values = _as_shared(own.values, _ais_keys("", OWN), _ais_keys("_shared", SHARED))
        return MetricResult({**values, "ais_shared_from_own": 1.0, **noise},
                            dataclasses.replace(run, reused_own=True))
    res = _ais(ctx, obs, "_shared")
    return MetricResult({**res.values, "ais_shared_from_own": 0.0, **noise}, res.detail)


@register_metric(
    "bdmc_shared",
    keys=(BDMC_SHARED_KEY, *(shared for _, shared in BDMC_DIAGNOSTICS), FROM_OWN_KEYS["bdmc_shared"]),
    needs={"prior", "generate"},
    produces={**_bdmc_keys("_shared", SHARED), **_from_own("bdmc_shared")},
    higher_is_better={"bdmc_gap_shared": False},
    description=f"BDMC gap of the shared-family AIS settings (Grosse et al. 2015), {SHARED}",
    after=("bdmc", "ais_shared"),
)
def bdmc_shared_metric(ctx: EvalContext) -> MetricResult:
    obs, noise = shared_observation(ctx)
    run = ctx.upstream_detail("ais_shared", AISRun)
    own = ctx.upstream.get("bdmc")
    if own is not None and run is not None and run.reused_own:
        values = _as_shared(own.values, _bdmc_keys("", OWN), _bdmc_keys("_shared", SHARED))
        return MetricResult({**values, "bdmc_shared_from_own": 1.0, **noise}, BDMCRun(reused_own=True))
    return MetricResult({**_bdmc(ctx, obs, "_shared", run), "bdmc_shared_from_own": 0.0, **noise},
                        BDMCRun())


@torch.no_grad()
def model_samples(model: torch.nn.Module, n: int, gen: torch.Generator, batch: int = 500) -> torch.Tensor:
    """n samples from the model, drawn ``batch`` at a time from one generator."""
    return require_finite(
        torch.cat([sample_from(model, min(batch, n - i), gen) for i in range(0, n, batch)]))


@register_metric(
    "parzen",
    keys=(PARZEN_KEY, PARZEN_SIGMA_KEY),
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
