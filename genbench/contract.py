"""The model contract: capabilities, not inheritance. One declaration, :data:`HOOKS`.

A model is an ``nn.Module`` with a frozen ``Config`` dataclass, built as
``Model(config, info)`` with a :class:`DataInfo` and registered with
``@register_model("name")``. What it can do is what it exposes: every method or attribute
the core may read is a :class:`Hook` in :data:`HOOKS` (name, signature, the capability it
gives, what that unlocks). :func:`capabilities` reads them off a model (or its class),
:func:`missing_reason` names the hook that would unlock a metric, and ``genbench check``
prints both. All hooks are optional except ``Config``, ``configure_optimizers`` and
``training_step``.

Training. By default (automatic optimization) ``training_step(batch)`` returns a dict whose
``"loss"`` carries gradients and the runner zeroes, backpropagates and steps the model's one
optimizer (:func:`step_model`). A model with several optimizers (a GAN) sets
``manual_optimization = True``; its ``training_step(batch, optimizers)`` steps them itself.

Derived capabilities. ``generate(z)`` defaults to ``decode(z).mean`` and ``sample(n)`` to
``generate(z)`` for z drawn from ``prior()`` (:func:`generate_from`, :func:`sample_from`),
so a model with ``prior`` and ``decode`` can already sample. Tensors are created on the
model's device (:func:`model_device`), never with ``.cuda()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.distributions import Distribution, Independent, MultivariateNormal, Normal, constraints

from genbench.errors import ContractError, GenbenchError

Observation = Literal["bernoulli", "gaussian"]


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about its data to shape itself."""

    name: str  # recorded dataset name (e.g. "mnist-5k" after a fallback)
    variant: str  # "dynamic" | "static" | "continuous"
    shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int | None = None  # class labels 0..K-1, or None
    num_attributes: int | None = None  # binary attribute labels (CelebA), or None
    observation: Observation = "bernoulli"  # the observation model the variant calls for
    label_names: tuple[str, ...] = ()
    splits: dict[str, int] = field(default_factory=dict)  # split name -> size

    @property
    def dim(self) -> int:
        c, h, w = self.shape
        return c * h * w


@dataclass
class Batch:
    """One training batch: ``x`` (N, C, H, W) in [0, 1]; ``y`` labels or None.

    ``index`` holds the rows' positions in the training split (so a semi-supervised model
    can tell its labelled examples apart).
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    index: torch.Tensor | None = None


@dataclass(frozen=True)
class Hook:
    """One thing the core may read off a model.

    ``capability`` is what having it gives (None for lifecycle hooks and settings);
    ``unlocks`` says what the core then does with it, in a reader's words.
    """

    name: str
    signature: str
    capability: str | None
    unlocks: str
    attribute: bool = False  # a class attribute (flag or table), not a method
    required: bool = False


HOOKS: tuple[Hook, ...] = (
    # -- construction: Model(config, info) keeps both -------------------------------------
    Hook("Config", "a frozen dataclass of the model's settings", None,
         "--set keys, presets and config.json; Model(Config(...), info) rebuilds a run",
         attribute=True, required=True),
    Hook("config", "the Config instance the model was built with", None,
         "recorded in config.json; metrics read documented fields (M2's label_seed)",
         attribute=True),
    Hook("info", "the DataInfo the model was built for", None,
         "galleries read the data's labels (analogies)", attribute=True),
    # -- training -------------------------------------------------------------------------
    Hook("configure_optimizers", "() -> Optimizer | dict[str, Optimizer]", "train",
         "training; one Optimizer is stepped by the runner", required=True),
    Hook("training_step", "(batch: Batch) -> dict[str, Tensor]  ('loss' carries gradients); "
         "with manual_optimization: (batch, optimizers) -> dict[str, Tensor]", "train",
         "training; every entry is logged to history.csv (detached)", required=True),
    Hook("manual_optimization", "bool = True", None,
         "the model steps its own optimizers (GAN, DCGAN, VAE-GAN)", attribute=True),
    Hook("presets", "dict[str, dict[str, Any]]  e.g. {'quick': {'epochs': 60}}", None,
         "per-preset TRAINING settings: config fields, epochs, batch_size, max_train", attribute=True),
    Hook("on_evaluator", "(extractor: Extractor) -> None", None,
         "called before on_train_start with the evaluator the sample metrics use under the "
         "run's preset (genbench.metrics.features.preset_extractor): the fooling generator "
         "optimizes images against it"),
    Hook("on_train_start", "(data: DataBundle) -> None", None,
         "called once before the first epoch (e.g. M2 picks its labelled subset)"),
    Hook("on_epoch_end", "(epoch: int, stats: dict[str, float]) -> None", None,
         "called after each epoch with its mean stats; may raise Diverged"),
    Hook("on_train_end", "(train_x: Tensor) -> None", None,
         "called once after training, under no_grad (e.g. the AE fits its ex-post prior)"),
    # -- generative capabilities ----------------------------------------------------------
    Hook("prior", "() -> Distribution over z, event shape (latent_dim,)", "prior",
         "ais, bdmc (with generate); sample derived from prior + generate"),
    Hook("decode", "(z, y=None) -> Distribution p(x|z), event shape (C, H, W)", "decode",
         "elbo (with encode, prior); generate derived as decode(z).mean"),
    Hook("generate", "(z, y=None) -> Tensor (N, C, H, W), the decoder's mean in [0, 1]",
         "generate", "iwae, ais, bdmc, recon (iwae and recon with encode)"),
    Hook("sample", "(n, generator=None, y=None) -> Tensor (n, C, H, W) in [0, 1]", "sample",
         "quality (fid, kid, is, prdc), modes, parzen, sample galleries"),
    Hook("encode", "(x, y=None) -> Distribution q(z|x), event shape (latent_dim,)", "encode",
         "elbo, iwae, recon, active_units, reconstructions and latent galleries"),
    Hook("point_encoder", "bool = True: encode returns a Delta (a deterministic code)", None,
         "marks the encoder as density-free: elbo, iwae n/a; ais starts from the prior",
         attribute=True),
    Hook("conditional", "bool = True: encode/decode/generate/sample/log_prob take y=", "condition",
         "likelihoods are log p(x|y) with the true label; analogies", attribute=True),
    Hook("draw_labels", "(n, generator=None) -> Tensor labels (n,) classes or (n, A) attributes",
         None, "a conditional model's derived sample(): the labels drawn when none are given"),
    Hook("classify", "(x) -> Distribution q(y|x)", "classify", "test_error"),
    Hook("labelled_counts", "() -> Tensor (K,) labelled training images per class", None,
         "test_error records the labels a semi-supervised model saw"),
    Hook("labelled_index", "Tensor (L,) training-split indices of the labelled images", None,
         "test_error records which images were labelled (with labelled_counts)", attribute=True),
    Hook("log_prob", "(x, y=None) -> Tensor (N,) exact log p(x) per image", "exact",
         "exact log-likelihood (autoregressive models, flows)"),
    Hook("log_importance_weights", "(x, k, generator=None) -> Tensor (k, N): "
         "log p(x, z) - log q(z|x) for k joint draws z ~ q(.|x)", "importance",
         "iwae and elbo for models whose latents are not one Gaussian (DRAW)"),
    Hook("edit", "(x, attribute: str, delta: float, y=None) -> Tensor decoded edited images",
         "edit", "attribute edits (others get them by latent arithmetic in the core)"),
    # a joint model of x and its labels y (JMVAE): all three hooks give the capability "joint"
    Hook("encode_joint", "(x, y, measures=None) -> Distribution q(z|x, y), event shape (latent_dim,); "
         "measures: the data's measured attributes of x, side information a proposal may use",
         "joint", "iwae_given_y: log p(x|y) = log p(x, y) - log p(y) (with the two hooks below)"),
    Hook("encode_labels", "(y) -> Distribution q(z|y), event shape (latent_dim,): a proposal for "
         "p(z|y) (the prior is a valid one)", "joint", "iwae_given_y: the log p(y) part"),
    Hook("label_log_prob", "(z, y) -> Tensor (S, N) log p(y|z) for z (S, N, latent_dim); whatever "
         "else the model generates beside x and y marginalized", "joint",
         "iwae_given_y: the label term of both parts"),
    # -- a reference row that is an adversary of the metrics (the fooling generator) ---------
    Hook("reference_row", "str: why the row is a reference, not a competitor", None,
         "the report labels the row with it and never ranks it", attribute=True),
    Hook("games", "tuple[str, ...]: the result keys the model optimizes for (inception_score)",
         None, "the report flags those numbers and says which metrics it fooled", attribute=True),
    # -- model-specific pictures ----------------------------------------------------------
    Hook("complete", "(x, rows: int, generator, y=None) -> Tensor: x's first rows kept, the "
         "rest sampled", None, "the completions gallery (autoregressive models)"),
    Hook("sample_steps", "(n, generator) -> Tensor (T, n, C, H, W) canvases while sampling",
         None, "the canvas gallery (DRAW)"),
    Hook("levels", "(z) -> list of (low, residual, image) per level, coarse to fine, in [-1, 1]",
         None, "the pyramid gallery (LAPGAN)"),
    Hook("reconstruction_steps", "(x, generator) -> Tensor (T, n, C, H, W) canvases while "
         "reconstructing", None, "the canvas gallery (DRAW)"),
    # -- a sequential code's rate and distortion step by step ---------------------------------
    Hook("compression_steps", "(x, eps) -> (Tensor (T, N) KL(q(z_t|x, z_<t) || p(z_t)) of each "
         "step in nats, the mean over z ~ q drawn with standard-normal noise eps (S, N, latent_dim); "
         "Tensor (T, N, C, H, W) the decoder's mean from the first t steps' mean code, the rest at "
         "the prior's mean)", None,
         "the compression metric's rate-distortion curve over t (DRAW, Conv DRAW); one point without"),
)
HOOK = {h.name: h for h in HOOKS}

# Derivations the core performs: capability -> the capabilities that together stand in for it.
# (A conditional model's derived sample also needs draw_labels, or labels from the caller.)
DERIVED: dict[str, tuple[str, ...]] = {"generate": ("decode",), "sample": ("prior", "generate")}

CAPABILITIES = ("train", "sample", "prior", "generate", "decode", "encode", "density_encoder",
                "condition", "classify", "exact", "importance", "edit", "joint")


def _has(model: object, name: str) -> bool:
    hook = HOOK[name]
    value = getattr(model, name, None)
    return bool(value) if hook.attribute else callable(value)


def capabilities(model: object) -> frozenset[str]:
    """The capabilities ``model`` (an instance or its class) exposes or the core derives."""
    have = {h.capability for h in HOOKS
            if h.capability and not h.required and _has(model, h.name)}
    # a capability several hooks declare (joint) needs every one of them
    have -= {h.capability for h in HOOKS if h.capability and not h.required and not _has(model, h.name)}
    if _has(model, "configure_optimizers") and _has(model, "training_step"):
        have.add("train")
    if "encode" in have and not getattr(model, "point_encoder", False):
        have.add("density_encoder")
    for cap, parts in DERIVED.items():  # generate before sample: sample may need a derived one
        if set(parts) <= have:
            have.add(cap)
    if "condition" in have and not _has(model, "sample") and not _has(model, "draw_labels"):
        have.discard("sample")  # a derived conditional sample needs labels to draw
    return frozenset(have)


# Why a metric is n/a, in checking order, each naming the hook that would unlock it.
MISSING_REASON = {
    "encode": "no encoder: add encode(x) -> Distribution",
    "decode": "no observation model: add decode(z) -> Distribution",
    "generate": "no decoder: add generate(z) (or decode(z))",
    "prior": "no prior: add prior() -> Distribution",
    "sample": "cannot sample: add sample(n, generator) (or prior() and generate(z))",
    "classify": "no classifier: add classify(x) -> Distribution",
    "condition": "not conditional: set conditional = True and take y=",
    "density_encoder": "point-mass encoder: encode(x) must return a distribution with a "
                       "density (not point_encoder = True)",
    "exact": "no exact likelihood: add log_prob(x)",
    "importance": "no importance weights: add log_importance_weights(x, k, generator)",
    "edit": "no edits: add edit(x, attribute, delta)",
    "joint": "no joint model of x and labels: add encode_joint(x, y), encode_labels(y) and "
             "label_log_prob(z, y)",
}


def missing_reason(needs: frozenset[str], have: frozenset[str]) -> str | None:
    """'no encoder: add encode(x) ...' for the first unmet capability, or None.

    Checked in MISSING_REASON's order, so a model without an encoder hears "no encoder"
    before "point-mass encoder" (a property of an encoder it does not have).
    """
    order = list(MISSING_REASON)
    for need in sorted(needs, key=lambda n: (order.index(n) if n in order else len(order), n)):
        if need not in have:
            return MISSING_REASON.get(need, f"no {need}")
    return None


# -- what the core derives ----------------------------------------------------------------
def generate_from(model: Any, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``model.generate(z)``, or the mean of ``model.decode(z)`` when it has no generate."""
    fn = model.generate if callable(getattr(model, "generate", None)) else None
    if fn is None:
        if not callable(getattr(model, "decode", None)):
            raise GenbenchError(MISSING_REASON["generate"])
        return (model.decode(z) if y is None else model.decode(z, y=y)).mean
    return fn(z) if y is None else fn(z, y=y)


def draw(dist: Distribution, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """n draws (n, *event_shape) from a Gaussian prior with an explicit ``generator``.

    ``torch.distributions`` take no generator, so the Gaussians are drawn here as
    loc + scale * eps; other priors are drawn with ``dist.sample`` when no generator is given.
    """
    base = dist.base_dist if isinstance(dist, Independent) else dist
    if isinstance(base, (Normal, MultivariateNormal)):
        loc = base.loc
        eps = torch.randn(n, *loc.shape, generator=generator, device=loc.device, dtype=loc.dtype)
        if isinstance(base, MultivariateNormal):
            return loc + eps @ base.scale_tril.T
        return loc + base.scale * eps
    if generator is None:
        return dist.sample((n,))
    raise GenbenchError(f"cannot draw from a {type(base).__name__} prior with a generator; "
                        "give the model its own sample(n, generator)")


def sample_from(model: Any, n: int, generator: torch.Generator | None = None,
                y: torch.Tensor | None = None) -> torch.Tensor:
    """n images (n, C, H, W): ``model.sample``, or ``generate_from(z ~ prior())``."""
    if callable(getattr(model, "sample", None)):
        if y is None:
            return model.sample(n, generator=generator)
        return model.sample(n, generator=generator, y=y)
    if not callable(getattr(model, "prior", None)):
        raise GenbenchError(MISSING_REASON["sample"])
    z = draw(model.prior(), n, generator)
    if y is None and getattr(model, "conditional", False):
        if not callable(getattr(model, "draw_labels", None)):
            raise GenbenchError("a conditional model without sample() needs y= labels or "
                                "draw_labels(n, generator)")
        y = model.draw_labels(n, generator)
    return generate_from(model, z, y)


# -- the runner's side of training ----------------------------------------------------------
def optimizer_dict(out: Any) -> dict[str, torch.optim.Optimizer]:
    """``configure_optimizers()``'s result as a dict (one Optimizer -> {"optimizer": it})."""
    if isinstance(out, torch.optim.Optimizer):
        return {"optimizer": out}
    if isinstance(out, Mapping) and out and all(
            isinstance(v, torch.optim.Optimizer) for v in out.values()):
        return dict(out)
    raise GenbenchError(f"configure_optimizers() must return an Optimizer or a dict of them, "
                        f"not {type(out).__name__}")


def old_contract(model: Any) -> str | None:
    """What to change, in one line, for a plugin written against the previous contract
    (``training_step(batch, optimizers)`` without ``manual_optimization = True``), else None."""
    import inspect

    fn = getattr(model, "training_step", None)
    if not callable(fn) or getattr(model, "manual_optimization", False):
        return None
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if isinstance(model, type) or not inspect.ismethod(fn):
        params = params[1:]  # the class's function: self first
    required = [p for p in params if p.default is p.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(required) < 2:
        return None
    name = model.__name__ if isinstance(model, type) else type(model).__name__
    return (f"{name}.training_step({', '.join(p.name for p in required)}) is the previous "
            "contract: add `manual_optimization = True` to the class if it steps its optimizers "
            "itself, or drop the optimizers argument and return {'loss': ...} for genbench to "
            "step (README: Adding a model)")


def step_model(model: Any, batch: Batch, optimizers: Mapping[str, torch.optim.Optimizer]
               ) -> dict[str, torch.Tensor]:
    """One training step; returns the step's stats, detached.

    Automatic optimization: ``training_step(batch)["loss"]`` is backpropagated and the one
    optimizer stepped here (zero, backward, step). Manual: the model steps its own.
    """
    if getattr(model, "manual_optimization", False):
        out = model.training_step(batch, optimizers)
        return {k: v.detach() for k, v in out.items()}
    if (why := old_contract(model)) is not None:
        raise ContractError(why)
    if len(optimizers) != 1:
        raise GenbenchError(f"{type(model).__name__} has {len(optimizers)} optimizers: set "
                            "manual_optimization = True and step them in training_step")
    out = model.training_step(batch)
    loss = out.get("loss") if isinstance(out, Mapping) else None
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise GenbenchError(f"{type(model).__name__}.training_step(batch) must return a dict "
                            "whose 'loss' carries gradients (or set manual_optimization = True)")
    (opt,) = optimizers.values()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {k: v.detach() for k, v in out.items()}


class Delta(Distribution):
    """A point mass at ``loc`` with event shape (D,): the AE's deterministic encoder.

    ``torch.distributions`` has none. ``log_prob`` is 0 at ``loc`` and -inf elsewhere, so
    importance sampling with it is meaningless; likelihood metrics that need a density
    encoder check :func:`has_density_encoder` and report "n/a: point-mass encoder".
    """

    arg_constraints = {"loc": constraints.real}
    has_rsample = True

    def __init__(self, loc: torch.Tensor, validate_args: bool | None = False) -> None:
        self.loc = loc
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=validate_args)

    @property
    def mean(self) -> torch.Tensor:
        return self.loc

    @property
    def variance(self) -> torch.Tensor:
        return torch.zeros_like(self.loc)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> torch.Tensor:
        return self.loc.expand(torch.Size(sample_shape) + self.loc.shape)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        same = (value == self.loc).all(-1)
        return torch.where(same, 0.0, float("-inf")).to(self.loc.dtype)

    def entropy(self) -> torch.Tensor:
        return torch.zeros(self.batch_shape, device=self.loc.device)


def has_density_encoder(model: object) -> bool:
    """True when ``encode`` returns a distribution with a density (not a :class:`Delta`)."""
    return callable(getattr(model, "encode", None)) and not getattr(model, "point_encoder", False)


def model_device(model: torch.nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
