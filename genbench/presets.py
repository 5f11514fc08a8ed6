"""Presets scale the protocol: ``smoke`` (seconds, for tests), ``quick`` (minutes on a
laptop CPU, the default) and ``paper`` (the published protocols; a GPU's work).

A preset holds the runner's and the evaluators' settings. A model may override its Config
fields and the TRAINING settings (fields marked ``training``: epochs, batch_size, max_train)
per preset (``Model.presets = {"quick": {"epochs": 60}}``), never an evaluation budget, so a
plugin cannot change how it is measured; the user has the last word with ``--epochs`` and
``--set KEY=VALUE``. The preset name is recorded in every
result, and the report never puts two presets in one column.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from genbench.errors import ContractError
from genbench.ranges import between, nonnegative, one_of, positive
from genbench.registry import closest


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    # training (a model's presets may set these)
    epochs: int = positive(10, metadata={"training": True})
    batch_size: int = positive(128, metadata={"training": True})
    # cap on training images (smoke uses a few hundred)
    max_train: int | None = positive(None, metadata={"training": True})
    # likelihood evaluation
    n_eval: int | None = positive(None)  # test images for ELBO/IWAE/reconstruction (None = all)
    iwae_k: int = positive(1000)
    iwae_chunk: int = positive(500)  # importance samples per chunk: memory, never the answer
    ais_n: int = positive(100)  # test images for AIS
    ais_chains: int = positive(16)
    ais_steps: int = positive(1000)  # intermediate distributions
    hmc_leapfrog: int = positive(10)  # leapfrog steps (gradients) per intermediate distribution
    # momentum kept from one distribution to the next (Hamiltonian AIS, Sohl-Dickstein &
    # Culpepper 2012); 0 refreshes it at every distribution, as Wu et al.'s HMC does
    hmc_persistence: float = between(0.0, 0.0, 0.99)
    bdmc_n: int = positive(20)  # images simulated from the model for BDMC
    parzen_samples: int = positive(10000)  # model samples in the Parzen window
    parzen_n: int = positive(1000)  # test images scored by Parzen
    # sample quality
    n_quality: int = positive(2000)  # generated samples (and real images) for FID & co.
    kid_subsets: int = positive(50)
    kid_subset_size: int = positive(500)
    feature_epochs: int = positive(5)  # epochs of the evaluator classifier
    # which metrics `genbench run` evaluates; empty = every default metric that applies
    metrics: tuple[str, ...] = ()
    # sample-quality features: "classifier" (trained by genbench) or "inception" (needs the
    # path of a torchvision inception_v3 state dict in inception_weights)
    feature_extractor: str = one_of("classifier", ("classifier", "inception", "inception-fid", "dinov2"))
    inception_weights: str | None = None
    # "inception-fid" (torch-fidelity's FID Inception) and "dinov2" (timm): a weights file,
    # else the library's cache (genbench never downloads them in tests)
    feature_weights: str | None = None
    # likelihood, shared family (Wu et al. 2017): the observation noise is chosen by a bounded
    # 1-D optimizer on validation images (IWAE where the model has a density encoder, short
    # AIS runs otherwise)
    obs_val_n: int = positive(20)  # validation images
    obs_val_steps: int = positive(100)  # AIS distributions per evaluated noise level (no encoder)
    # AIS starts from the "encoder" q(z|x) where the model has a density encoder (valid, and
    # far fewer distributions), else from the "prior"; "prior" forces the prior everywhere
    ais_init: str = one_of("encoder", ("encoder", "prior"))
    # the AIS schedule doubles from ais_steps until two successive estimates' means agree
    # within ais_tol nats/image or the next would exceed ais_max_steps (then: not converged)
    ais_max_steps: int = positive(4000)
    ais_tol: float = positive(0.5)
    # an AIS is *certified* when its BDMC gap + 2 s.e. (same start, schedule and observation
    # model) is at most certify_tol nats/image; BDMC anneals bdmc_first simulated images first
    # and adds more (the total doubling up to bdmc_n) only while that is still open
    certify_tol: float = positive(1.0)
    bdmc_first: int = positive(4)
    # the pilot (0: none): before the full AIS, BDMC on pilot_n simulated images at half
    # pilot_steps, pilot_steps, then doubled up to ais_steps, until a look decides: certified,
    # or its gap's extrapolation (optimistic before ais_steps, 1/T at it) needs more than
    # ais_max_steps distributions; then AIS runs once at that look's schedule, not certified
    pilot_steps: int = nonnegative(0)
    pilot_n: int = positive(4)
    # inference network q(z|x) for a model without a density encoder (metrics/inference.py):
    # fitted on infer_pairs codes z ~ p(z) the model decodes (its cost); the defaults are
    # quick's, which a run recorded before these settings existed gets
    infer_pairs: int = positive(8192)
    # test images of IWAE through an inference network (None: n_eval), whose generators
    # (DCGAN's convolutions) cost far more per draw than a VAE's decoder
    infer_iwae_n: int | None = positive(100)

    def with_overrides(self, **changes: object) -> Preset:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        "smoke", "seconds: a few hundred images, one epoch, tiny evaluations (for tests)",
        epochs=1, batch_size=64, max_train=512, n_eval=64, iwae_k=16, iwae_chunk=8,
        ais_n=8, ais_chains=4, ais_steps=20, ais_max_steps=80, hmc_leapfrog=5, bdmc_n=6,
        parzen_samples=256, parzen_n=64, n_quality=256, kid_subsets=10, kid_subset_size=64,
        feature_epochs=1, obs_val_n=4, obs_val_steps=10,
        infer_pairs=256, infer_iwae_n=None,
    ),
    "quick": Preset(
        "quick", "minutes on a laptop CPU (the default): real training, modest evaluations",
        epochs=30, batch_size=128, n_eval=1000, iwae_k=1000, iwae_chunk=500,
        ais_n=20, ais_chains=16, ais_steps=500, ais_max_steps=1000, hmc_leapfrog=1,
        hmc_persistence=0.9, bdmc_n=16, pilot_steps=250,
        parzen_samples=2000, parzen_n=500, n_quality=2000, kid_subsets=50,
        kid_subset_size=500, feature_epochs=5, obs_val_n=10, obs_val_steps=500,
    ),
    "paper": Preset(
        "paper", "the published protocols (IWAE k=5000 on the full test set; AIS 16 chains, "
        "1,000 distributions doubled until converged, up to 16,000): a GPU's work",
        epochs=1000, batch_size=100, n_eval=None, iwae_k=5000, iwae_chunk=1000,
        ais_n=1000, ais_chains=16, ais_steps=1000, ais_max_steps=16000, hmc_leapfrog=10,
        bdmc_n=100, infer_pairs=32768, infer_iwae_n=None,
        parzen_samples=10000, parzen_n=10000, n_quality=10000, kid_subsets=100,
        kid_subset_size=1000, feature_epochs=20, obs_val_n=100, obs_val_steps=1000,
    ),
}

DEFAULT_PRESET = "quick"
# presets whose runs skip the galleries at the end of evaluation (genbench.galleries.stored):
# smoke is seconds, for tests, and the galleries would double it; `genbench gallery --results`
# draws them afterwards
NO_GALLERIES_AT_EVALUATION = frozenset({"smoke"})
PRESET_KEYS = tuple(f.name for f in dataclasses.fields(Preset) if f.name not in ("name", "description"))
TRAINING_KEYS = tuple(f.name for f in dataclasses.fields(Preset) if f.metadata.get("training"))


def check_model_preset_key(config_cls: type, preset_name: str, key: str,
                           config_fields: Mapping[str, object]) -> None:
    """ContractError (a TypeError) unless ``key``, set by a model's ``presets[preset_name]``, is one of its
    Config fields or a training setting: evaluation budgets belong to the preset and the
    command line, so that every model is measured alike."""
    if key in config_fields or key in TRAINING_KEYS:
        return
    what = "an evaluation setting" if key in PRESET_KEYS else "no setting at all"
    raise ContractError(f"the model's {preset_name!r} preset (Config {config_cls.__qualname__}) sets "
                    f"{key!r}, {what}: a model preset may set its Config fields and the training "
                    f"settings {', '.join(TRAINING_KEYS)}; evaluation budgets belong to the preset "
                    "and --set")


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise closest(name, PRESETS, "preset")
    return PRESETS[name]
