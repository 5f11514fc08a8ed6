"""Sample-quality adapters: ``quality`` (FID, KID, precision/recall, density/coverage) and
``modes`` (classifier Inception Score, mode KL, classes covered), each beside its floor.

The adapters are thin: they draw ``preset.n_quality`` samples, pass them and a fixed set
of real test images through the evaluator (:mod:`genbench.metrics.features`), and hand
the features to the pure functions in :mod:`frechet`, :mod:`kid`, :mod:`prdc` and
:mod:`modes`. Which set is which: *generated* = the model's samples, *real* = the
reference (``min(n_quality, test size)`` test images of a fixed subset, in mean form, see
:func:`features.mean_images`). The floor (:mod:`floor`) runs the same functions with
training images in place of samples.

Samples are drawn in blocks of ``SAMPLE_BLOCK`` images, block b from its own generator
seeded by (run seed, b): the images do not depend on the chunk size the features are
computed in, and the first m of n samples are the m samples a smaller preset would draw.
A conditional model whose ``sample`` takes ``y`` gets labels drawn from the training
labels (the data's class or attribute distribution).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from genbench.contract import sample_from
from genbench.errors import GenbenchError
from genbench.metrics import floor, reference
from genbench.metrics.bootstrap import fid_bootstrap
from genbench.metrics.context import NOT_APPLICABLE, EvalContext
from genbench.metrics.features import Extractor, fixed_subset, mean_images, preset_extractor
from genbench.metrics.frechet import fid_features_to_statistics, fid_statistics_to_metric
from genbench.metrics.kid import kid_features_to_metric
from genbench.metrics.modes import class_histogram, classes_covered, inception_score, mode_kl
from genbench.metrics.prdc import prdc_standard
from genbench.metrics.sampling import require_finite, seed_from
from genbench.registry import ResultKey, register_metric

SALT = 60_601  # this module's evaluation randomness: ctx.generator(SALT + i)
SAMPLE_BLOCK = 64  # images per sampling generator (the unit of randomness, not memory)
FEATURE_CHUNK = 500  # images per feature-extraction pass (memory only)

DISTANCE_KEYS = ("fid", "kid", "kid_stderr", "precision", "recall", "density", "coverage")
MODE_KEYS = ("inception_score", "inception_score_stderr", "mode_kl", "classes_covered")


@dataclass
class FeatureSet:
    features: torch.Tensor  # (N, D)
    logits: torch.Tensor  # (N, K)


# -- images -> features ---------------------------------------------------------------

def real_features(extractor: Extractor, x: torch.Tensor, variant: str, n: int,
                  chunk: int = FEATURE_CHUNK) -> FeatureSet:
    """Features of a fixed subset of ``n`` real images (uint8 split) in mean form; read
    from the reference statistics when `genbench stats` cached them (bit-identical)."""
    if (stored := reference.cached(extractor, x, variant, n)) is not None:
        return FeatureSet(*stored)
    index = fixed_subset(x.shape[0], n, x.device)
    return FeatureSet(*extractor(mean_images(x[index], variant), chunk))

def reference_set(extractor: Extractor, x: torch.Tensor, variant: str, n: int, *, dataset: str,
                  split: str) -> reference.ReferenceSet:
    """The reference set of a split's fixed subset (``genbench stats``), through the metrics'
    own feature call, so a cached set is bit-identical to what a run computes."""
    key = reference.set_key(extractor, x, variant, n, dataset=dataset, split=split)
    got = real_features(extractor, x, variant, n)
    mu, sigma = reference.mean_cov(got.features)
    return reference.ReferenceSet(key, got.features, got.logits, mu, sigma)



def _block_generator(device: torch.device, base: int, block: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed((base * 1_000_003 + block) & (2**63 - 1))


def _sample_block(model: torch.nn.Module, m: int, gen: torch.Generator,
                  labels: torch.Tensor | None) -> torch.Tensor:
    own = getattr(model, "sample", None)  # else derived from prior + generate
    takes_y = getattr(model, "conditional", False) and (
        own is None or "y" in inspect.signature(own).parameters)
    if takes_y and labels is not None:  # labels drawn from the data's empirical distribution
        pick = torch.randint(labels.shape[0], (m,), generator=gen, device=gen.device)
        return sample_from(model, m, gen, y=labels[pick.to(labels.device)])
    return sample_from(model, m, gen)


@torch.no_grad()
def generated_features(model: torch.nn.Module, extractor: Extractor, n: int, *, seed: int,
                       device: torch.device, labels: torch.Tensor | None = None,
                       chunk: int = FEATURE_CHUNK,
                       progress: Callable[[int, int], None] | None = None) -> FeatureSet:
    """Features of ``n`` model samples; blocks of SAMPLE_BLOCK seeded by (seed, block).
    ``progress(samples done, n)`` is called after each block's features."""
    feats: list[FeatureSet] = []
    buffer: list[torch.Tensor] = []
    held = 0
    for block, start in enumerate(range(0, n, SAMPLE_BLOCK)):
        m = min(SAMPLE_BLOCK, n - start)
        images = require_finite(_sample_block(model, m, _block_generator(device, seed, block), labels))
        buffer.append(images.float().clamp(0, 1))
        held += m
        if held >= chunk or start + m == n:
            feats.append(FeatureSet(*extractor(torch.cat(buffer), chunk)))
            buffer, held = [], 0
        if progress is not None:
            progress(start + m, n)
    return FeatureSet(torch.cat([f.features for f in feats]), torch.cat([f.logits for f in feats]))


# -- features -> numbers (pure) ---------------------------------------------------------

def distance_metrics(generated: FeatureSet, real: FeatureSet, *, kid_subsets: int,
                     kid_subset_size: int, generator: torch.Generator) -> dict[str, float]:
    """FID, KID (+ stderr), precision/recall (k=3), density/coverage (k=5)."""
    fid = fid_statistics_to_metric(fid_features_to_statistics(generated.features),
                                   fid_features_to_statistics(real.features))
    kid, kid_err = kid_features_to_metric(generated.features, real.features, subsets=kid_subsets,
                                          subset_size=kid_subset_size, generator=generator)
    return {"fid": fid, "kid": kid, "kid_stderr": kid_err,
            **prdc_standard(real.features, generated.features)}


def mode_metrics(generated: FeatureSet, class_probs: torch.Tensor) -> dict[str, float]:
    """Classifier Inception Score (+ stderr), mode KL and classes covered."""
    counts = class_histogram(generated.logits, class_probs.shape[0])
    score, score_err = inception_score(generated.logits)
    return {"inception_score": score, "inception_score_stderr": score_err,
            "mode_kl": mode_kl(counts, class_probs),
            "classes_covered": float(classes_covered(counts, class_probs))}


def class_probabilities(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The training split's class frequencies (K,), float64."""
    counts = torch.bincount(labels.flatten().long().cpu(), minlength=num_classes).double()
    return counts / counts.sum()


# -- the adapters ---------------------------------------------------------------------

def _extractor(ctx: EvalContext) -> Extractor:
    epochs = iter(range(1, ctx.preset.feature_epochs + 1))  # its progress: one call per epoch
    return preset_extractor(ctx.data, ctx.preset, ctx.cache_dir,
                            progress=lambda _: ctx.progress(next(epochs, ctx.preset.feature_epochs),
                                                            ctx.preset.feature_epochs,
                                                            "epochs training the evaluator (once)"))


def _class_probs(ctx: EvalContext) -> torch.Tensor | None:
    k = ctx.data.info.num_classes
    return None if not k or ctx.data.train.y is None else class_probabilities(ctx.data.train.y, k)


def _reference(ctx: EvalContext, ext: Extractor) -> FeatureSet:
    n_real = min(ctx.preset.n_quality, len(ctx.data.test))
    return real_features(ext, ctx.data.test.x, ctx.data.info.variant, n_real)


def _samples(ctx: EvalContext, ext: Extractor) -> FeatureSet:
    """Features of the model's ``n_quality`` samples, drawn once per evaluation.

    quality, modes and memorization score the same samples (same seed, same count), so the
    first to ask draws them and the others reuse them from ``ctx.results``: for a model
    that samples slowly (PixelCNN, one pixel at a time) drawing is most of their cost.
    """
    if ctx.preset.n_quality < 10:
        raise GenbenchError(f"n_quality={ctx.preset.n_quality} is too few for k-NN metrics; "
                            "use --set n_quality=256 or more")
    seed = seed_from(ctx.generator(SALT))
    key = f"_generated_features:{ext.feature_space}:{ctx.preset.n_quality}:{seed}"
    if key not in ctx.results:
        ctx.results[key] = generated_features(ctx.model, ext, ctx.preset.n_quality, seed=seed,
                                              device=ctx.device, labels=ctx.data.train.y,
                                              progress=ctx.tracker("samples"))
    return ctx.results[key]


def _floor(ctx: EvalContext, ext: Extractor, real: FeatureSet) -> dict[str, float]:
    """The stored real-versus-real floor (computed and stored on first use)."""
    p, data = ctx.preset, ctx.data
    n_train = min(p.n_quality, len(data.train))
    counts = f"n{n_train}-r{real.features.shape[0]}-kid{p.kid_subsets}x{p.kid_subset_size}"

    def compute() -> dict[str, float]:
        train = real_features(ext, data.train.x, data.info.variant, n_train)
        gen = torch.Generator(device=real.features.device).manual_seed(floor.FLOOR_SEED)
        values = distance_metrics(train, real, kid_subsets=p.kid_subsets,
                                  kid_subset_size=p.kid_subset_size, generator=gen)
        probs = _class_probs(ctx)
        if probs is not None and ext.task == "classes":
            values.update(mode_metrics(train, probs))
        elif ext.score_logits is not None:  # the library's own Inception Score (inception-fid)
            values.update(zip(("inception_score", "inception_score_stderr"),
                              ext.score_logits(train.logits), strict=True))
        return {"feature_space": ext.feature_space, "dataset": data.info.name,
                "variant": data.info.variant, "n_train": n_train,
                "n_reference": real.features.shape[0], "counts": counts,
                **{f"floor_{k}": v for k, v in values.items()}}

    path = floor.floor_path(dataset=data.info.name, variant=data.info.variant,
                            feature_space=ext.feature_space, counts=counts,
                            results_root=ctx.results_root, cache_dir=ctx.cache_dir)
    stored = floor.load_or_compute_floor(path, compute)
    return {k: v for k, v in stored.items() if k.startswith("floor_")}


_DESCRIBE = {
    "fid": "Fréchet distance of evaluator features, samples vs test images (lower is better)",
    "kid": "kernel (cubic polynomial) MMD^2 of evaluator features, unbiased (lower is better)",
    "kid_stderr": "standard error of kid over its subsets",
    "precision": "share of samples inside the real k=3 NN manifold (Kynkäänniemi et al. 2019)",
    "recall": "share of real images inside the samples' k=3 NN manifold",
    "density": "mean real k=5 NN balls holding a sample, over k (Naeem et al. 2020)",
    "coverage": "share of real images whose k=5 NN ball holds a sample (Naeem et al. 2020)",
    "inception_score": "exp E KL(p(y|x) || p(y)) with the dataset's own classifier (inception-fid: "
                       "torch-fidelity's, of its Inception logits, mean of 10 splits)",
    "inception_score_stderr": "standard error of inception_score over 10 splits",
    "mode_kl": "KL(predicted-class histogram of samples || data class distribution), nats",
    "classes_covered": "classes with at least 10% of their data share among the samples",
}
_HIGHER = {"fid": False, "kid": False, "kid_stderr": False, "precision": True, "recall": True,
           "density": True, "coverage": True, "inception_score": True,
           "inception_score_stderr": False, "mode_kl": False, "classes_covered": True}


def _produces(keys: tuple[str, ...]) -> dict[str, str]:
    out = {k: _DESCRIBE[k] for k in keys}
    out.update({f"floor_{k}": f"{k} of training vs test images (the real-vs-real floor)"
                for k in keys})
    out["feature_space"] = "the evaluator the numbers were measured in (name:weights-hash)"
    return out


def _higher(keys: tuple[str, ...]) -> dict[str, bool]:
    return {**{k: _HIGHER[k] for k in keys}, **{f"floor_{k}": _HIGHER[k] for k in keys}}


QUALITY_KEYS = (
    ResultKey("fid",
              label="FID",
              caveat=("The Frechet distance between Gaussians fitted to real and generated features "
                      "(Heusel et al. 2017); lower is better. It is biased in the sample count and "
                      "comparable only within one feature space and one count."),
              direction="lower",
              section="Sample quality",
              stderr=True,
              headline=4,
              best_text="FID"),
    ResultKey("kid",
              label="KID",
              caveat=("The kernel inception distance (Binkowski et al. 2018): an unbiased MMD with a "
                      "polynomial kernel, averaged over subsets. Less biased than FID for small "
                      "samples, but noisier."),
              direction="lower",
              section="Sample quality",
              stderr=True),
    ResultKey("precision",
              label="precision",
              caveat=("The fraction of samples that fall inside the k-NN manifold of real features "
                      "(Kynkaenniemi et al. 2019): fidelity. Outliers among the real points inflate "
                      "it."),
              direction="higher",
              section="Sample quality"),
    ResultKey("recall",
              label="recall",
              caveat=("The fraction of real features inside the k-NN manifold of samples: diversity. "
                      "Outliers among the samples inflate it."),
              direction="higher",
              section="Sample quality"),
    ResultKey("density",
              label="density",
              caveat=("Like precision but counts how many real neighbourhoods contain each sample "
                      "(Naeem et al. 2020), robust to outliers. It can exceed 1 when samples crowd "
                      "dense regions."),
              direction="higher",
              section="Sample quality"),
    ResultKey("coverage",
              label="coverage",
              caveat=("The fraction of real points with a sample in their k-NN ball (Naeem et al. "
                      "2020). A robust recall, bounded by 1."),
              direction="higher",
              section="Sample quality"),
)


@register_metric(
    "quality", needs={"sample"},
    keys=QUALITY_KEYS,
    produces={**_produces(DISTANCE_KEYS),
              "fid_stderr": "bootstrap standard error of fid over the generated samples",
              "feature_accuracy": "test accuracy of the evaluator classifier"},
    higher_is_better={**_higher(DISTANCE_KEYS), "fid_stderr": False, "feature_accuracy": True},
    description="FID, KID, precision/recall, density/coverage in the evaluator's features")
def quality(ctx: EvalContext) -> dict[str, float | str]:
    ext = _extractor(ctx)
    real = _reference(ctx, ext)
    generated = _samples(ctx, ext)
    values = distance_metrics(generated, real, kid_subsets=ctx.preset.kid_subsets,
                              kid_subset_size=ctx.preset.kid_subset_size,
                              generator=ctx.generator(SALT + 1))
    # FID has no closed-form error: a bootstrap over the samples lets the report bold only
    # an FID that is best beyond its uncertainty
    values["fid_stderr"], _ = fid_bootstrap(generated.features, real.features,
                                            generator=ctx.generator(SALT + 2))
    floors = _floor(ctx, ext, real)
    values.update({k: v for k, v in floors.items() if k[len("floor_"):] in DISTANCE_KEYS})
    if ext.accuracy is not None:
        values["feature_accuracy"] = ext.accuracy
    return {**values, "feature_space": ext.feature_space}


MODES_KEYS = (
    ResultKey("inception_score",
              label="IS",
              caveat=("exp E[KL(p(y|x) || p(y))] with genbench's own classifier standing in for "
                      "Inception (Salimans et al. 2016; in the inception-fid feature space, "
                      "torch-fidelity's Inception Score, as papers report it). It rewards "
                      "confident, varied classes and ignores whether samples look like the data."),
              direction="higher",
              section="Sample quality",
              stderr=True),
    ResultKey("mode_kl",
              label="mode KL",
              caveat=("KL of the predicted-class histogram of samples from the data's class "
                      "frequencies. It catches mode collapse between classes, not within one."),
              direction="lower",
              unit="nats",
              section="Sample quality"),
    ResultKey("classes_covered",
              label="classes covered",
              caveat=("How many classes the classifier finds among the samples. A coarse check: one "
                      "sample per class already counts."),
              direction="higher",
              unit="classes",
              section="Sample quality"),
)


@register_metric(
    "modes", needs={"sample"}, produces=_produces(MODE_KEYS), higher_is_better=_higher(MODE_KEYS),
    keys=MODES_KEYS,
    description="classifier Inception Score and mode coverage of the samples (labelled data)")
def modes(ctx: EvalContext) -> dict[str, float | str]:
    ext = None  # the classifier is loaded (or trained) only where it can serve
    if getattr(ctx.preset, "feature_extractor", "classifier") != "classifier":
        ext = _extractor(ctx)
        if ext.score_logits is not None:  # inception-fid: the Inception Score as papers report it
            return library_inception_score(ctx, ext)
    probs = _class_probs(ctx)
    if probs is None:
        raise GenbenchError(f"mode coverage needs class labels; {ctx.data.info.name} has none")
    ext = ext or _extractor(ctx)
    if ext.task != "classes":
        raise GenbenchError("mode coverage needs the dataset's own classifier; "
                            "use feature_extractor=classifier")
    values = mode_metrics(_samples(ctx, ext), probs)
    floors = _floor(ctx, ext, _reference(ctx, ext))
    values.update({k: v for k, v in floors.items() if k[len("floor_"):] in MODE_KEYS})
    return {**values, "feature_space": ext.feature_space}


def library_inception_score(ctx: EvalContext, ext: Extractor) -> dict[str, object]:
    """The Inception Score of the samples (and of the floor's training images) as the
    library behind the feature space computes it (torch-fidelity for inception-fid); the
    mode metrics need the dataset's classes, which ImageNet's are not, so they are n/a."""
    score, err = ext.score_logits(_samples(ctx, ext).logits)
    values: dict[str, object] = {"inception_score": score, "inception_score_stderr": err}
    floors = _floor(ctx, ext, _reference(ctx, ext))
    values.update({k: v for k, v in floors.items() if k[len("floor_"):] in MODE_KEYS})
    why = (f"needs the dataset's own classes (feature_extractor=classifier); {ext.feature_space} "
           "predicts ImageNet's")
    gone = ("mode_kl", "classes_covered")
    return {**values, "feature_space": ext.feature_space,
            NOT_APPLICABLE: {k: why for k in (*gone, *(f"floor_{g}" for g in gone))}}
