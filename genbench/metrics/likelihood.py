"""Marginal-likelihood metrics: IWAE bound, AIS, BDMC gap and the Parzen window.

Thin adapters from an :class:`EvalContext` to the pure cores in :mod:`iwae`, :mod:`ais`,
:mod:`bdmc` and :mod:`parzen`. Every estimate is in nats per image, higher is better, with
the standard error over images. The observation model p(x|z) they share is chosen once per
evaluation (:func:`observation_for`) and its noise level is recorded beside the numbers.
"""

from __future__ import annotations

import torch

from genbench import register_metric
from genbench.contract import has_density_encoder
from genbench.errors import GenbenchError
from genbench.metrics.ais import HMCConfig, ais_log_likelihood
from genbench.metrics.bdmc import bdmc
from genbench.metrics.context import EvalContext
from genbench.metrics.elbo import mean_stderr
from genbench.metrics.iwae import iwae_bound
from genbench.metrics.obsmodel import FLIP_GRID, SIGMA_GRID, ObservationModel, choose_noise
from genbench.metrics.parzen import choose_sigma, parzen_log_density
from genbench.metrics.sampling import labels_for, seed_from

SALT_OBS, SALT_IWAE, SALT_AIS, SALT_BDMC, SALT_PARZEN = 21, 22, 23, 24, 25
NOISE_KEYS = {
    "obs_sigma": "std of the spherical Gaussian p(x|z) chosen on validation (continuous data)",
    "obs_flip": "flip probability of the Bernoulli p(x|z) of a generator chosen on validation",
}  # declared by `ais` (every generator has it); `iwae` and `bdmc` record the same value


def _split(ctx: EvalContext, split: str, n: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    return ctx.data.eval_x(split, n), labels_for(ctx.model, ctx.data.eval_y(split, n))


def _hmc(ctx: EvalContext) -> HMCConfig:
    return HMCConfig(leapfrog=ctx.preset.hmc_leapfrog)


def observation_for(ctx: EvalContext) -> tuple[ObservationModel, dict[str, float]]:
    """The p(x|z) to score under, and the recorded noise level (if one was chosen).

    A Bernoulli decoder on binarized data is used as it is. Otherwise (continuous data, or a
    generator without ``decode``) the noise level is chosen by short AIS runs on validation
    images, once per evaluation (reused through ``ctx.results``).
    """
    model = ctx.model
    continuous = ctx.data.info.observation == "gaussian"
    if not continuous and callable(getattr(model, "decode", None)):
        return ObservationModel("decoder"), {}
    if not callable(getattr(model, "generate", None)):
        raise GenbenchError("n/a: the model has no generate(z) to put an observation model on")
    kind, grid, key = ("gaussian", SIGMA_GRID, "obs_sigma") if continuous else ("bernoulli", FLIP_GRID,
                                                                                  "obs_flip")
    if key not in ctx.results:
        p = ctx.preset
        x, y = _split(ctx, "val", p.obs_val_n)
        seed = seed_from(ctx.generator(SALT_OBS))

        # short runs: the step size adapts 5x faster than in the reported AIS (1.1 / 0.9)
        hmc = HMCConfig(leapfrog=p.hmc_leapfrog, inc=1.1, dec=0.9)

        def estimate(obs: ObservationModel, repeats: int) -> torch.Tensor:
            xr = x.repeat(repeats, *([1] * (x.dim() - 1)))
            yr = None if y is None else y.repeat(repeats, *([1] * (y.dim() - 1)))
            return ais_log_likelihood(model, obs, xr, yr, chains=max(2, p.ais_chains // 4),
                                      steps=p.obs_val_steps, hmc=hmc, seed=seed)[0]

        ctx.results[key], _ = choose_noise(kind, grid, x.shape[0], estimate)
    noise = float(ctx.results[key])
    return ObservationModel(kind, noise), {key: noise}


@register_metric(
    "iwae",
    # generate, not decode: a generator without p(x|z) (VAE-GAN) is scored under the same
    # observation model AIS uses, so its IWAE and AIS are bounds on one quantity
    needs={"encode", "generate", "prior", "density_encoder"},
    produces={"test_iwae": "importance-weighted bound on log p(x) (log p(x|y), true label, for a "
                          "conditional model), nats/image (Burda et al. 2015)"},
    higher_is_better={"test_iwae": True},
    description="IWAE bound with preset k importance samples on the test split (Burda et al. 2015)",
)
def iwae_metric(ctx: EvalContext) -> dict[str, float]:
    obs, noise = observation_for(ctx)
    x, y = _split(ctx, "test", ctx.preset.n_eval)
    bound = iwae_bound(ctx.model, x, y, k=ctx.preset.iwae_k, seed=seed_from(ctx.generator(SALT_IWAE)),
                       chunk=ctx.preset.iwae_chunk, obs=obs)
    mean, se = mean_stderr(bound)
    return {"test_iwae": mean, "test_iwae_stderr": se, **noise}


def _ais_init(ctx: EvalContext) -> bool:
    if ctx.preset.ais_init not in ("prior", "encoder"):
        raise GenbenchError(f"ais_init must be 'prior' or 'encoder', not {ctx.preset.ais_init!r}")
    return ctx.preset.ais_init == "encoder" and has_density_encoder(ctx.model)


@register_metric(
    "ais",
    needs={"prior", "generate"},
    produces={"test_ais": "AIS estimate (stochastic lower bound) of log p(x) (log p(x|y) for a "
                          "conditional model), nats/image",
              "ais_accept": "mean HMC acceptance rate",
              "ais_minus_iwae": "AIS minus the IWAE bound on the same test images (paired), nats/image",
              **NOISE_KEYS},
    higher_is_better={"test_ais": True},
    description="annealed importance sampling with HMC on the test split (Neal 2001; Wu et al. 2017)",
)
def ais_metric(ctx: EvalContext) -> dict[str, float]:
    obs, noise = observation_for(ctx)
    p = ctx.preset
    x, y = _split(ctx, "test", p.ais_n)
    est, accept = ais_log_likelihood(ctx.model, obs, x, y, chains=p.ais_chains, steps=p.ais_steps,
                                     hmc=_hmc(ctx), seed=seed_from(ctx.generator(SALT_AIS)),
                                     from_encoder=_ais_init(ctx))
    mean, se = mean_stderr(est)
    return {"test_ais": mean, "test_ais_stderr": se, "ais_accept": accept, **noise,
            **_paired_with_iwae(ctx, x, y, obs, est)}


def _paired_with_iwae(ctx: EvalContext, x: torch.Tensor, y: torch.Tensor | None, obs: ObservationModel,
                      ais: torch.Tensor) -> dict[str, float]:
    """AIS minus IWAE on AIS's own images, where the model has a density encoder.

    AIS runs on fewer test images than IWAE, so the two headline means differ by which
    images they saw as much as by the estimators (a few nats at quick's 20 images). Both are
    stochastic lower bounds of the same log p(x), and the paired difference on the same images,
    with its own small standard error, is what says whether AIS was run long enough.
    """
    if not has_density_encoder(ctx.model):
        return {}
    bound = iwae_bound(ctx.model, x, y, k=ctx.preset.iwae_k, seed=seed_from(ctx.generator(SALT_IWAE)),
                       chunk=ctx.preset.iwae_chunk, obs=obs)
    diff, diff_se = mean_stderr(ais.double() - bound)
    return {"ais_minus_iwae": diff, "ais_minus_iwae_stderr": diff_se}


@register_metric(
    "bdmc",
    needs={"prior", "generate"},
    produces={"bdmc_gap": "BDMC upper minus lower bound on simulated data, nats/image",
              "bdmc_lower": "forward AIS on simulated data", "bdmc_upper": "reverse AIS on simulated data"},
    higher_is_better={"bdmc_gap": False},
    description="bidirectional Monte Carlo gap of the AIS settings (Grosse et al. 2015)",
)
def bdmc_metric(ctx: EvalContext) -> dict[str, float]:
    obs, noise = observation_for(ctx)
    p = ctx.preset
    y = labels_for(ctx.model, ctx.data.eval_y("test", p.bdmc_n))
    res = bdmc(ctx.model, obs, n=p.bdmc_n, shape=ctx.data.info.shape, chains=p.ais_chains,
               steps=p.ais_steps, hmc=_hmc(ctx), seed=seed_from(ctx.generator(SALT_BDMC)), y=y)
    gap, gap_se = mean_stderr(res.gap)
    return {"bdmc_gap": gap, "bdmc_gap_stderr": gap_se, "bdmc_lower": float(res.lower.mean()),
            "bdmc_upper": float(res.upper.mean()), **noise}


@torch.no_grad()
def model_samples(model: torch.nn.Module, n: int, gen: torch.Generator, batch: int = 500) -> torch.Tensor:
    """n samples from the model, drawn ``batch`` at a time from one generator."""
    return torch.cat([model.sample(min(batch, n - i), generator=gen) for i in range(0, n, batch)])


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
