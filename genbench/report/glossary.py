"""What the report says about each metric and model, read from the declarations.

The report teaches: every metric and every model gets two sentences, what it is and its
caveat. A number's label, direction (which way it ranks, after torchmetrics'
``higher_is_better``), section and caveat are declared once, beside the metric that makes
it, as a :class:`genbench.registry.ResultKey`; the store keeps those declarations in each
run folder, so a plugin's metric is labelled without importing the plugin. What is left here
describes the sections and the models, which no metric declares.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from genbench.registry import METRICS, SHARED_SECTION, ResultKey, declared_keys, result_key
from genbench.registry import log_likelihood_keys as registry_log_likelihoods


def _declared() -> dict[str, ResultKey]:
    import genbench.metrics  # noqa: F401 - the built-in metrics declare their keys on import

    return declared_keys()


@dataclass(frozen=True)
class Section:
    title: str
    intro: str
    diagnostic: bool = False  # how numbers were measured, not how good a model is (after the rest)

    @property
    def keys(self) -> tuple[str, ...]:
        """The keys declared in this section, in the order their metrics declare them."""
        return tuple(k.name for k in _declared().values() if k.section == self.title and not k.prefix)

    @property
    def prefixes(self) -> tuple[str, ...]:
        """Families of keys named prefix + attribute (edit_slope_thickness) in this section."""
        return tuple(k.name for k in _declared().values() if k.section == self.title and k.prefix)

    def columns(self, keys: Iterable[str]) -> list[str]:
        """This section's columns among ``keys``: each attribute's prefixed keys side by side
        (attributes in the order their metric declares them), then the fixed keys in order."""
        keys, prefixes = list(keys), self.prefixes
        attrs = dict.fromkeys(k[len(p):] for k in keys for p in prefixes
                              if k.startswith(p) and len(k) > len(p))
        declared = {k: i for i, k in enumerate(k for e in METRICS.values() for k in e.produces)}

        def rank(a: str) -> tuple[int, str]:
            return min(declared.get(p + a, len(declared)) for p in prefixes), a

        prefixed = [p + a for a in sorted(attrs, key=rank) for p in prefixes if p + a in keys]
        return prefixed + [k for k in self.keys if k in keys]


GIVEN_Y = "Likelihood given the label"

# The sections in the report's order, with what each says before its table; a plugin's key
# may name one of these titles, or a title of its own (a section after these).
_SECTIONS = (
    Section("Likelihood",
            "Test log-likelihood in nats per image under each model's own p(x|z) (higher is better; "
            "NLL = -value; bits/dim beside it). Within a row ELBO <= IWAE <= AIS up to noise."),
    Section(GIVEN_Y,
            "log p(x | y) given the true label y, in nats per image under each model's own p(x|z), "
            "beside the conditional models' († rows) IWAE bound, which is the same quantity and "
            "repeated here from the table above. A joint model of images and labels (JMVAE) "
            "gets it as log p(x, y) - log p(y), two IWAE bounds: an estimate that is exact as k "
            "grows but neither a lower nor an upper bound, so the column is not ranked (a bound "
            "beside an estimate that is none)."),
    Section(SHARED_SECTION,
            "Every model with a generator, GANs included, under one observation family (Wu et al. "
            "2017): a spherical Gaussian of std obs_sigma on continuous data, a Bernoulli of the "
            "mean image with flip probability obs_flip on binarized data, the level chosen per "
            "model on validation. Not comparable with the own-model columns above."),
    Section("Reconstruction",
            "How well a model with an encoder gives back its input, and what the KL term costs."),
    Section("Sample quality",
            "Measured in the features of an evaluator classifier genbench trains on the dataset "
            "itself; the real-versus-real floor row is the best a metric can say."),
    Section("Memorization",
            "Samples closer to a training image than it is to its nearest other training image "
            "(Alaa et al. 2022), in the evaluator's features; the excess is over held-out test "
            "images, which fall that close by chance."),
    Section("Attribute edits",
            "Test images edited by -2 .. +2 training standard deviations of each measured "
            "attribute (-1 .. +1 of a binary one) through the model's own edit hook (JMVAE), a "
            "CVAE's condition, or latent arithmetic, then measured again (Morpho-MNIST measures; "
            "on CelebA the attribute classifier) and compared with the zero edit, the model's "
            "reconstruction. Slopes are not ranked: above 1 an edit overshoots."),
    Section("Classification",
            "Semi-supervised models also classify; the error depends on how many labels they had."),
    # how the likelihoods were measured: bookkeeping, after every ranked number
    Section("AIS diagnostics",
            "How each AIS under the model's own p(x|z) ran: its schedule (doubled until two runs "
            "agree), HMC acceptance, its start, and the pilot BDMC that sized the schedule. "
            "0/1 records are counted over seeds (k of n).", diagnostic=True),
    Section("BDMC certificates",
            "The BDMC runs on data simulated from the model that certify its AIS: the forward "
            "(lower) and reverse (upper) bounds whose gap is the BDMC gap, and whether it was "
            "within the tolerance.", diagnostic=True),
    Section("AIS diagnostics, shared family",
            "The same for the AIS under the shared family, with the inference network fitted for "
            "a model without a density encoder, and whether the own-decoder numbers were reused.",
            diagnostic=True),
    Section("BDMC certificates, shared family", "The BDMC certificates of the shared-family AIS.",
            diagnostic=True),
)


def sections() -> tuple[Section, ...]:
    """The report's sections: the known ones, then any a plugin's keys declare."""
    titles = {s.title for s in _SECTIONS}
    extra = dict.fromkeys(k.section for k in _declared().values() if k.section and k.section not in titles)
    return _SECTIONS + tuple(Section(t, "") for t in extra)


def headline_keys() -> list[ResultKey]:
    """The headline numbers their metrics declare (``ResultKey.headline``: the closing table
    of ``genbench run``, TensorBoard's headline), in the report's section order."""
    order = {s.title: i for i, s in enumerate(sections())}
    heads = [k for k in _declared().values() if k.headline > 0]
    return sorted(heads, key=lambda k: order.get(k.section, len(order)))


def declared(key: str) -> ResultKey | None:
    """``key``'s declaration (the store's, or a built-in metric's), or None if nobody declared it."""
    return result_key(key) if _declared() else None


def is_flag(key: str) -> bool:
    """A 0/1 record (did AIS converge, start from the encoder): counted over seeds, never averaged."""
    declared = result_key(key) if _declared() else None
    return declared is not None and declared.flag


def estimators() -> list[ResultKey]:
    """The declared estimates of log p(x) (exact, AIS, IWAE, ELBO, shared family, Parzen)."""
    return [k for k in _declared().values() if k.estimates == "log p(x)"]


def given_label_is_easier(key: str) -> bool:
    """A log-likelihood (or its reconstruction term) that a conditional model measures given its
    label, log p(x | y): easier than log p(x), so such a model is never ranked on it."""
    declared = result_key(key) if _declared() else None
    return declared is not None and declared.estimates in ("log p(x)", "log p(x|z)")


def headline_sentences() -> list[tuple[str, str, str]]:
    """(key, what, group) for the report's headline sentences, from the keys that declare a
    ``best_text``: one sentence per group, from its first key that can be said. The estimates
    of log p(x) are grouped by family (exact, own p(x|z), shared), the closest first
    (``stands_for``); any other key is a group of its own, after them in declaration order."""
    said = [k for k in _declared().values() if k.best_text and k.higher_is_better is not None]
    rank = {k.name: (0, k.stands_for) if k.stands_for else (1, i) for i, k in enumerate(said)}

    def group(k: ResultKey) -> str:
        return k.family if k.estimates == "log p(x)" else k.name

    first: dict[str, tuple[int, int]] = {}
    for k in said:
        first[group(k)] = min(first.get(group(k), rank[k.name]), rank[k.name])
    ordered = sorted(said, key=lambda k: (first[group(k)], rank[k.name]))
    return [(k.name, f"{'highest' if k.higher_is_better else 'lowest'} {k.best_text}", group(k))
            for k in ordered]


def section_of(key: str) -> str:
    """The report section ``key`` is declared in ("" if it is not declared)."""
    declared = result_key(key) if _declared() else None
    return declared.section if declared is not None else ""


def log_likelihood_keys(shared: bool = True) -> list[str]:
    """Keys that estimate or bound log p(x) in nats/image (NLL and bits/dim apply)."""
    _declared()
    return registry_log_likelihoods(shared)


def __getattr__(name: str) -> object:
    if name == "SECTIONS":  # read at each use: declarations arrive with plugins and run folders
        return sections()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MODEL_TEXT = {
    "vae": "The variational autoencoder (Kingma & Welling 2013): a Gaussian encoder, a prior N(0, I) "
           "and a decoder trained on the ELBO with the reparameterization trick. It has every "
           "capability, but its samples are blurry where the decoder averages.",
    "ae": "A deterministic autoencoder with an ex-post Gaussian prior fitted to its codes (Ghosh et "
          "al. 2020). Its point-mass encoder has no density, so IWAE is n/a and its samples depend "
          "on how Gaussian the codes are.",
    "gan": "The generative adversarial network of Goodfellow et al. (2014): an MLP generator trained "
           "against a discriminator. It has no encoder or likelihood of its own; genbench scores it "
           "under a Gaussian observation model chosen on validation data (Wu et al. 2017).",
    "dcgan": "The deep convolutional GAN of Radford et al. (2016). Sharp samples, but the same "
             "caveats as the GAN: no encoder, a likelihood only under an assumed observation model, "
             "and seed-to-seed variance.",
    "vaegan": "VAE-GAN (Larsen et al. 2016): a VAE whose reconstruction error is measured in a "
              "discriminator's features. Samples are sharper than the VAE's, but its ELBO is not a "
              "pixel likelihood bound, so compare its AIS rather than its training loss.",
    "cvae": "The conditional VAE (Sohn et al. 2015): encoder and decoder see the label y. Its "
            "likelihoods are log p(x | y), which is easier than log p(x), so they are not directly "
            "comparable with the unconditional rows.",
    "jmvae": "The joint multimodal VAE of Suzuki et al. (2016): one z for the image and its labels "
             "or attributes, a joint encoder q(z|x, y) and unimodal q(z|x), q(z|y), trained with "
             "the JMVAE-kl terms. Its IWAE and AIS are log p(x) with y marginalized; its log p(x|y), "
             "comparable with a CVAE's, is in the table given the label. It edits attributes through "
             "q(z|x, y).",
    "m2": "The semi-supervised M2 of Kingma et al. (2014): a classifier q(y|x) beside q(z|x, y) and "
          "p(x|y, z), trained with few labels. Its test error is the headline; its likelihood "
          "marginalises over the predicted label.",
    "fooling": "Fooling images (Nguyen et al. 2015), a reference row, not a competitor: no model of "
               "the data, only noise optimized (pixels, or a CPPN's patterns) until genbench's own "
               "evaluator classifier is over 99% sure of each class. It games the metrics that read "
               "the classifier's decision (IS, classes covered) and should lose on those that read "
               "its features (FID, precision, density); it has no likelihood.",
}

CONDITIONAL_NOTE = ("conditional: likelihoods are log p(x | y) given the true label, not comparable "
                    "with unconditional rows")


def direction(key: str) -> bool | None:
    """True if higher is better, False if lower, None if the key is not a ranking."""
    declared = result_key(key) if _declared() else None
    return declared.higher_is_better if declared is not None else None


def label(key: str) -> str:
    declared = result_key(key) if _declared() else None
    if declared is None or not declared.label:
        return key
    return declared.label.format(a=key[len(declared.name):]) if declared.prefix else declared.label


def metric_text(key: str) -> str:
    declared = result_key(key) if _declared() else None
    if declared is None:
        return "A metric from a plugin; its adapter does not describe it."
    attribute = key[len(declared.name):] if declared.prefix else ""
    if declared.caveat:
        return declared.caveat.format(a=attribute) if declared.prefix else declared.caveat
    owner = next((e for e in METRICS.values() if declared in e.keys), None)
    text = f"{declared.text}. {owner.description if owner else ''}".strip()
    return text if declared.text else "A metric from a plugin; its adapter does not describe it."


def model_text(name: str, registered: str = "") -> str:
    return MODEL_TEXT.get(name) or (f"{registered or 'A model from a plugin.'} Read its plugin's "
                                    "docstring for what its numbers mean.")
