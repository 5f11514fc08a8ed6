"""What the report says about each metric and model, and which way each metric ranks.

The report teaches: every metric and every model gets two sentences, what it is and its
caveat. Directions come from the metric registry (``higher_is_better``, after torchmetrics);
the table below is the fallback for a result key whose adapter is not loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from genbench.registry import METRICS


@dataclass(frozen=True)
class Section:
    title: str
    keys: tuple[str, ...]
    intro: str
    prefixes: tuple[str, ...] = ()  # keys named prefix + attribute (edit_slope_thickness) belong too

    def columns(self, keys: Iterable[str]) -> list[str]:
        """This section's columns among ``keys``: each attribute's prefixed keys side by side
        (attributes in the order their metric declares them), then the fixed keys in order."""
        keys = list(keys)
        attrs = dict.fromkeys(k[len(p):] for k in keys for p in self.prefixes
                              if k.startswith(p) and len(k) > len(p))
        declared = {k: i for i, k in enumerate(k for e in METRICS.values() for k in e.produces)}

        def rank(a: str) -> tuple[int, str]:
            return min(declared.get(p + a, len(declared)) for p in self.prefixes), a

        prefixed = [p + a for a in sorted(attrs, key=rank) for p in self.prefixes if p + a in keys]
        return prefixed + [k for k in self.keys if k in keys]


GIVEN_Y = "Likelihood given the label"

SECTIONS = (
    Section("Likelihood", ("test_exact", "test_elbo", "test_iwae", "test_ais", "ais_minus_iwae",
                           "bdmc_gap"),
            "Test log-likelihood in nats per image under each model's own p(x|z) (higher is better; "
            "NLL = -value; bits/dim beside it). Within a row ELBO <= IWAE <= AIS up to noise."),
    Section(GIVEN_Y, ("test_iwae_given_y", "test_iwae_joint", "test_iwae_labels"),
            "log p(x | y) given the true label y, in nats per image under each model's own p(x|z), "
            "beside the conditional models' († rows) IWAE bound, which is the same quantity and "
            "repeated here from the table above. A joint model of images and labels (JMVAE) "
            "gets it as log p(x, y) - log p(y), two IWAE bounds: an estimate that is exact as k "
            "grows but neither a lower nor an upper bound, so the column is not ranked (a bound "
            "beside an estimate that is none)."),
    Section("Likelihood, shared family", ("test_iwae_shared", "test_ais_shared", "ais_minus_iwae_shared",
                                          "bdmc_gap_shared", "obs_sigma", "obs_flip", "parzen"),
            "Every model with a generator, GANs included, under one observation family (Wu et al. "
            "2017): a spherical Gaussian of std obs_sigma on continuous data, a Bernoulli of the "
            "mean image with flip probability obs_flip on binarized data, the level chosen per "
            "model on validation. Not comparable with the own-model columns above."),
    Section("Reconstruction", ("test_recon_term", "test_kl_term", "recon_bce", "recon_mse",
                               "active_units"),
            "How well a model with an encoder gives back its input, and what the KL term costs."),
    Section("Sample quality", ("fid", "kid", "inception_score", "precision", "recall", "density",
                               "coverage", "mode_kl", "classes_covered"),
            "Measured in the features of an evaluator classifier genbench trains on the dataset "
            "itself; the real-versus-real floor row is the best a metric can say."),
    Section("Memorization", ("copied_fraction", "copied_excess"),
            "Samples closer to a training image than it is to its nearest other training image "
            "(Alaa et al. 2022), in the evaluator's features; the excess is over held-out test "
            "images, which fall that close by chance."),
    Section("Attribute edits", ("edit_entanglement", "edit_identity"),
            "Test images edited by -2 .. +2 training standard deviations of each measured "
            "attribute (-1 .. +1 of a binary one) through the model's own edit hook (JMVAE), a "
            "CVAE's condition, or latent arithmetic, then measured again (Morpho-MNIST measures; "
            "on CelebA the attribute classifier) and compared with the zero edit, the model's "
            "reconstruction. Slopes are not ranked: above 1 an edit overshoots.",
            prefixes=("edit_slope_", "edit_corr_")),
    Section("Classification", ("test_error", "labelled_examples"),
            "Semi-supervised models also classify; the error depends on how many labels they had."),
)

# Fallback directions: True = higher is better, None = not a ranking (no best marked).
DIRECTION: dict[str, bool | None] = {
    "test_exact": True, "test_elbo": True, "test_iwae": True, "test_ais": True,
    "ais_minus_iwae": None, "bdmc_gap": False,
    "parzen": True, "test_iwae_shared": True, "test_ais_shared": True, "ais_minus_iwae_shared": None,
    "bdmc_gap_shared": False, "obs_sigma": None, "obs_flip": None,
    "test_recon_term": True, "test_kl_term": None, "recon_bce": False, "recon_mse": False,
    "active_units": None, "fid": False, "kid": False, "inception_score": True, "precision": True,
    "recall": True, "density": True, "coverage": True, "mode_kl": False, "classes_covered": True,
    "test_error": False, "labelled_examples": None, "copied_fraction": False, "copied_excess": False,
    "test_iwae_given_y": None, "test_iwae_joint": True, "test_iwae_labels": None,
    "edit_entanglement": False, "edit_identity": True,
}

LABELS = {
    "test_exact": "exact log p(x)",
    "test_elbo": "ELBO", "test_iwae": "IWAE", "test_ais": "AIS", "ais_minus_iwae": "AIS - IWAE (paired)",
    "bdmc_gap": "BDMC gap", "test_iwae_shared": "IWAE (shared)", "test_ais_shared": "AIS (shared)",
    "ais_minus_iwae_shared": "AIS - IWAE (shared, paired)", "bdmc_gap_shared": "BDMC gap (shared)",
    "obs_sigma": "obs. sigma", "obs_flip": "obs. flip", "copied_fraction": "copied",
    "copied_excess": "copied - test floor",
    "parzen": "Parzen", "test_recon_term": "E[log p(x|z)]", "test_kl_term": "KL(q||p)",
    "recon_bce": "recon BCE", "recon_mse": "recon MSE", "active_units": "active units",
    "fid": "FID", "kid": "KID", "inception_score": "IS", "precision": "precision",
    "recall": "recall", "density": "density", "coverage": "coverage", "mode_kl": "mode KL",
    "classes_covered": "classes covered", "test_error": "test error",
    "test_iwae_given_y": "log p(x|y)", "test_iwae_joint": "log p(x, y) (IWAE)",
    "test_iwae_labels": "log p(y) (IWAE)", "edit_entanglement": "entanglement",
    "edit_identity": "identity kept",
}
# keys with an attribute suffix: prefix -> label with {a} for the attribute
PATTERN_LABELS = {"edit_slope_": "{a} slope", "edit_corr_": "{a} corr"}

METRIC_TEXT = {
    "test_exact": "The exact log-likelihood of a model that has one (PixelCNN: a product of per-pixel "
                  "conditionals), not a bound. On continuous data a categorical over 8-bit values is "
                  "read as a density on [0, 1]: log P(bins) + D log 256.",
    "test_elbo": "The evidence lower bound E_q[log p(x|z)] - KL(q(z|x) || p(z)) of Kingma & Welling "
                 "(2013) on the test set, the objective a VAE maximises. It is only a bound: a model "
                 "with a poor encoder looks worse than it is.",
    "test_iwae": "The importance-weighted bound of Burda et al. (2015): log of the mean of k weights "
                 "p(x, z)/q(z|x); it tightens toward log p(x) as k grows. It needs a density encoder, "
                 "so a GAN or a point-mass AE gets n/a.",
    "test_ais": "Annealed importance sampling (Neal 2001) with HMC from q(z|x) (or the prior, "
                "without an encoder) to the posterior under the model's own p(x|z). Its schedule "
                "doubles until two runs agree within ais_tolerance; one that did not is flagged "
                "and not ranked. A stochastic lower bound whose tightness the BDMC gap probes.",
    "ais_minus_iwae": "AIS minus the IWAE bound on the same test images (AIS's, fewer than IWAE's), "
                      "with the standard error of the paired difference. Both are lower bounds on "
                      "log p(x), so a clearly negative value says AIS was run too short for the model.",
    "bdmc_gap": "Bidirectional Monte Carlo (Grosse et al. 2015): on data simulated from the model, the "
                "gap between reverse (upper) and forward (lower) AIS. A small gap says the AIS number "
                "is trustworthy, but only on simulated data, not on the test set itself.",
    "test_iwae_shared": "The IWAE bound with the model's encoder as proposal, but p(x|z) replaced by "
                        "the shared family around generate(z). It lets a model without a decoder of "
                        "its own (VAE-GAN) be bounded; it needs a density encoder.",
    "test_ais_shared": "AIS under the shared family of Wu et al. (2017): how a GAN gets a "
                       "log-likelihood at all. It ranks generators, not their own observation "
                       "models, and depends on the noise level chosen on validation.",
    "ais_minus_iwae_shared": "AIS minus IWAE under the shared family, paired on AIS's images.",
    "bdmc_gap_shared": "The BDMC gap of the shared-family AIS on data simulated from the generator "
                       "plus the shared noise; large gaps mean the AIS number is loose.",
    "obs_sigma": "The std of the shared spherical Gaussian, maximizing the validation likelihood "
                 "(bounded Brent in log space). Smaller means the model's mean images fit closer.",
    "obs_flip": "The flip probability of the shared Bernoulli on binarized data, chosen like "
                "obs_sigma.",
    "copied_fraction": "The share of samples that sit closer to a training image than that image sits "
                       "to any other training image (authenticity, Alaa et al. 2022). Fresh data "
                       "does this by chance too, so read it beside the test-image floor.",
    "copied_excess": "copied minus the same share for held-out test images, with its binomial "
                     "standard error. Clearly above zero: the model reproduces training images.",
    "parzen": "A Gaussian kernel density estimate on model samples (Goodfellow et al. 2014), kept as "
              "the legacy baseline. It is badly biased in 784 dimensions: Wu et al. (2017) show it "
              "ranks models in the wrong order, so never read it as a likelihood.",
    "test_recon_term": "The ELBO's reconstruction term E_q[log p(x|z)] on the test set. Higher means "
                       "sharper reconstructions, which a model can buy with a larger KL.",
    "test_kl_term": "KL(q(z|x) || p(z)), the ELBO's rate: the nats the code carries about x. Neither "
                    "direction is better by itself; near zero means posterior collapse.",
    "recon_bce": "Binary cross-entropy between a test image and its reconstruction through the "
                 "encoder's mean code. It rewards blur on ambiguous pixels and says nothing about samples.",
    "recon_mse": "Mean squared error between a test image and its reconstruction. Like BCE it favours "
                 "blurry averages over sharp but shifted strokes.",
    "active_units": "Latent dimensions whose posterior mean varies with x (covariance above 0.01, "
                    "Burda et al. 2015). Few active units mean the latent space is underused.",
    "fid": "The Frechet distance between Gaussians fitted to real and generated features (Heusel et "
           "al. 2017); lower is better. It is biased in the sample count and comparable only within "
           "one feature space and one count.",
    "kid": "The kernel inception distance (Binkowski et al. 2018): an unbiased MMD with a polynomial "
           "kernel, averaged over subsets. Less biased than FID for small samples, but noisier.",
    "inception_score": "exp E[KL(p(y|x) || p(y))] with genbench's own classifier standing in for "
                       "Inception (Salimans et al. 2016). It rewards confident, varied classes and "
                       "ignores whether samples look like the data.",
    "precision": "The fraction of samples that fall inside the k-NN manifold of real features "
                 "(Kynkaenniemi et al. 2019): fidelity. Outliers among the real points inflate it.",
    "recall": "The fraction of real features inside the k-NN manifold of samples: diversity. Outliers "
              "among the samples inflate it.",
    "density": "Like precision but counts how many real neighbourhoods contain each sample (Naeem et "
               "al. 2020), robust to outliers. It can exceed 1 when samples crowd dense regions.",
    "coverage": "The fraction of real points with a sample in their k-NN ball (Naeem et al. 2020). A "
                "robust recall, bounded by 1.",
    "mode_kl": "KL of the predicted-class histogram of samples from the data's class frequencies. It "
               "catches mode collapse between classes, not within one.",
    "classes_covered": "How many classes the classifier finds among the samples. A coarse check: one "
                       "sample per class already counts.",
    "test_error": "The classification error of q(y|x) on the test set (M2, Kingma et al. 2014). It "
                  "depends strongly on how many labels were used in training.",
    "labelled_examples": "How many training images a semi-supervised model saw with their label. "
                         "Compare test errors only at the same count.",
    "test_iwae_given_y": "The conditional log-likelihood log p(x|y) of the test image given its true "
                         "label, under the model's own p(x|z). A conditional model (CVAE, †) bounds "
                         "it from below with its IWAE bound; a joint model of images and labels "
                         "(JMVAE) estimates it as log p(x, y) - log p(y), each an IWAE bound with k "
                         "draws (proposals q(z|x, y) and q(z|y)). That difference is consistent (exact "
                         "as k grows) but neither a lower nor an upper bound: a loose log p(y) makes "
                         "it too high. It is easier than log p(x): compare it only with its own column.",
    "test_iwae_joint": "The IWAE bound on log p(x, y), the image and its label together, with the "
                       "joint encoder q(z|x, y) as proposal: the first part of log p(x|y).",
    "test_iwae_labels": "The IWAE bound on log p(y), the label alone, with the label encoder q(z|y) "
                        "(or the prior) as proposal: the part subtracted from log p(x, y). A log "
                        "p(y) near log(1/10) on ten balanced classes says the model's p(y) is right.",
    "edit_entanglement": "The mean absolute change of the other measured attributes per standard "
                         "deviation requested, over attributes, requests and images (lower is better; "
                         "0: an edit touches nothing else). Latent arithmetic drags correlated "
                         "attributes along.",
    "edit_identity": "The share of edited digits the evaluator classifies as the reconstruction's "
                     "digit. An edit that changes a 4 into a 9 has moved more than its attribute.",
}
PATTERN_TEXT = {
    "edit_slope_": "The least-squares slope of the achieved change of {a} (measured on the edited "
                   "image, in training sd) on the requested change: 1 is an edit that does what was "
                   "asked, 0 none, above 1 overshoots. Decoded means are blurrier than the inputs, "
                   "which pulls slopes below 1.",
    "edit_corr_": "The correlation of the achieved change of {a} with the requested one over all "
                  "images and requests: whether a larger request gives a larger change, whatever "
                  "the scale.",
}

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
}

CONDITIONAL_NOTE = ("conditional: likelihoods are log p(x | y) given the true label, not comparable "
                    "with unconditional rows")


# Never ranked, whatever an adapter declares: a small KL is posterior collapse as often as it
# is a virtue, so "best KL" would teach the wrong lesson; an edit's slope is best at 1, not at
# its highest.
UNRANKED = frozenset({"test_kl_term"})
UNRANKED_PREFIXES = ("edit_slope_",)


def _pattern(key: str, table: dict[str, str]) -> str | None:
    """``table``'s entry for a key with an attribute suffix, the attribute filled in."""
    for prefix, text in table.items():
        if key.startswith(prefix) and len(key) > len(prefix):
            return text.format(a=key[len(prefix):])
    return None


def direction(key: str) -> bool | None:
    """True if higher is better, False if lower, None if the key is not a ranking."""
    if key in UNRANKED or key.startswith(UNRANKED_PREFIXES):
        return None
    for entry in METRICS.values():
        if key in entry.higher_is_better:
            return entry.higher_is_better[key]
    return DIRECTION.get(key)


def label(key: str) -> str:
    return LABELS.get(key) or _pattern(key, PATTERN_LABELS) or key


def metric_text(key: str) -> str:
    if key in METRIC_TEXT:
        return METRIC_TEXT[key]
    if text := _pattern(key, PATTERN_TEXT):
        return text
    for entry in METRICS.values():
        if key in entry.produces:
            return f"{entry.produces[key]}. {entry.description}".strip()
    return "A metric from a plugin; its adapter does not describe it."


def model_text(name: str, registered: str = "") -> str:
    return MODEL_TEXT.get(name) or (f"{registered or 'A model from a plugin.'} Read its plugin's "
                                    "docstring for what its numbers mean.")
