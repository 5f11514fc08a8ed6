"""Latent arithmetic, the 2-D manifold and the latent scatter.

Arithmetic follows Radford et al. (2016), who averaged the latent vectors of a concept,
and Larsen et al. (2016), who edited CelebA attributes with the difference of the mean
codes of faces with and without the attribute. Vectors come from the encoder where there
is one; a model without an encoder (GAN, DCGAN) gets them from its own samples labelled by
genbench's evaluator classifier.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genbench.contract import draw
from genbench.errors import GenbenchError
from genbench.galleries import latent
from genbench.galleries.core import (
    N_STATS,
    NotApplicable,
    codes,
    decode_mean,
    has_encoder,
    register_gallery,
    save_png_grid,
    test_images,
)
from genbench.loading import LoadedRun

# CelebA edits (attribute, strength in prior standard deviations) shown by the 2016 survey
# genbench grew from.
CELEBA_EDITS = (("Smiling", 3.0), ("Male", 3.0), ("Young", -5.0), ("Mustache", 5.0),
                ("Eyeglasses", 1.0))


@torch.no_grad()
def latent_stats(run: LoadedRun, generator: torch.Generator, feature_space: str | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes (N, D), labels): encoded test images, or labelled prior samples without an encoder."""
    if has_encoder(run.model):
        x, y = test_images(run, N_STATS)
        if y is None:
            raise NotApplicable(f"dataset {run.data.info.name!r} has no labels; latent arithmetic "
                                "needs class or attribute labels")
        return codes(run, x, y), y
    if not callable(getattr(run.model, "prior", None)):
        raise NotApplicable(f"{run.config['model']} has neither an encoder nor a prior, so no "
                            "codes for latent arithmetic")
    z = draw(run.model.prior(), N_STATS // 2, generator)  # ~50 labelled samples a class
    return z, classifier_labels(run, decode_mean(run, z), feature_space)


def classifier_labels(run: LoadedRun, x: torch.Tensor, feature_space: str | None) -> torch.Tensor:
    """Labels of generated images from the cached evaluator classifier (never trained here).

    The classifier is the one that measured the run (its ``feature_space`` names the weights'
    hash). Classes (N,) by argmax, or attributes (N, A) in {0, 1} by the sign of the logits.
    """
    from genbench.metrics import features

    ext = features.find_extractor(run.data, feature_space or "", features.default_cache_dir())
    if ext is None:
        raise GenbenchError(f"{run.config['model']} has no encoder, and labelling its samples needs "
                            f"the evaluator classifier that measured it ({feature_space or 'none recorded'}"
                            f"); run `genbench features {run.data.info.name} --preset {run.preset.name}`")
    _, logits = ext.net.to(x.device)(x)
    return logits.argmax(1) if ext.task == "classes" else (logits > 0).float()


def _start(run: LoadedRun, n: int, z: torch.Tensor, y: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Codes and labels of the rows to edit, plus their input images (None without an encoder)."""
    if has_encoder(run.model):
        x, _ = test_images(run, n)
        return z[: len(x)], y[: len(x)], x
    return z[:n], y[:n], None


def _target_index(run: LoadedRun, target: str) -> int:
    names = [n.lower() for n in run.data.info.label_names]
    if target.lower() in names:
        return names.index(target.lower())
    if target.isdigit() and int(target) < max(len(names), run.data.info.num_classes or 0):
        return int(target)
    raise GenbenchError(f"unknown class or attribute {target!r}; choose from "
                        f"{', '.join(run.data.info.label_names) or 'none (no labels)'}")


def edit_vectors(run: LoadedRun, z: torch.Tensor, y: torch.Tensor, z0: torch.Tensor,
                 y0: torch.Tensor, target: str | None, strength: float | None
                 ) -> list[tuple[torch.Tensor, float]]:
    """(per-row vector (R, D), strength) for each column of the arithmetic grid."""
    info = run.data.info
    if info.num_classes:
        means = latent.class_means(z, y, info.num_classes)  # (K, D)
        targets = [_target_index(run, target)] if target else range(info.num_classes)
        strengths = [1.0 if strength is None else strength] * len(targets)
        return [(means[k][None] - means[y0.long()], s) for k, s in zip(targets, strengths, strict=True)]
    if target:
        default = dict((a.lower(), s) for a, s in CELEBA_EDITS).get(target.lower(), 1.0)
        edits = [(target, default if strength is None else strength)]
    else:
        edits = default_edits(info.label_names)
    out = []
    for name, s in edits:
        vec = latent.attribute_vector(z, y[:, _target_index(run, name)])
        out.append((vec[None].expand_as(z0), s))
    return out


def default_edits(label_names: tuple[str, ...]) -> list[tuple[str, float]]:
    """The survey's CelebA edits present among the attributes, else +3 on the first three."""
    names = [n.lower() for n in label_names]
    found = [(a, s) for a, s in CELEBA_EDITS if a.lower() in names]
    return found or [(n, 3.0) for n in label_names[:3]]


def arithmetic_caption(run: LoadedRun) -> str:
    """How the arithmetic gallery was made."""
    rows = ("test images (first column) and their unedited reconstructions (second)"
            if has_encoder(run.model) else
            "prior draws (first column: unedited), vectors from 500 samples labelled by the "
            "evaluator classifier")
    if run.data.info.num_classes:
        edits = "then each code moved to every class mean in turn, z - mean[y] + mean[k]"
    else:
        shown = [f"{a} {s:+g}" for a, s in default_edits(run.data.info.label_names)]
        edits = ("then the attribute edits " + ", ".join(shown) + " (unit mean-difference vectors, "
                 "strength in prior standard deviations)")
    return f"Latent arithmetic on {rows}: {edits}."


@torch.no_grad()
def arithmetic_images(run: LoadedRun, generator: torch.Generator, *, n: int = 8,
                      target: str | None = None, strength: float | None = None,
                      feature_space: str | None = None) -> tuple[torch.Tensor, int]:
    """Rows: images; columns: [input,] unedited decode, then each edit (or each class)."""
    if getattr(run.model, "conditional", False):
        raise NotApplicable(f"{run.config['model']} is conditional: its label does the editing; "
                            "use --kind analogies")
    z, y = latent_stats(run, generator, feature_space)
    z0, y0, x0 = _start(run, n, z, y)
    columns = [] if x0 is None else [x0]
    columns.append(decode_mean(run, latent.apply_edit(z0, torch.zeros_like(z0), 0.0)))
    for vec, s in edit_vectors(run, z, y, z0, y0, target, strength):
        columns.append(decode_mean(run, latent.apply_edit(z0, vec, s)))
    grid = torch.stack(columns, 1)  # (R, columns, C, H, W)
    return grid.flatten(0, 1), grid.shape[1]


@register_gallery("arithmetic", needs=frozenset({"generate"}),
                  description="Latent arithmetic: class-mean or attribute vectors added to codes.",
                  caption=arithmetic_caption)
def arithmetic(run: LoadedRun, out_path: Path, *, generator: torch.Generator, n: int = 8,
               target: str | None = None, strength: float | None = None,
               feature_space: str | None = None) -> Path:
    images, ncol = arithmetic_images(run, generator, n=n, target=target, strength=strength,
                                     feature_space=feature_space)
    return save_png_grid(images, out_path, ncol)


@register_gallery("manifold", needs=frozenset({"prior", "generate"}),
                  description="The 2-D latent manifold (Kingma & Welling 2013, Fig. 4): a grid "
                              "through the inverse Gaussian CDF.")
@torch.no_grad()
def manifold(run: LoadedRun, out_path: Path, *, generator: torch.Generator, manifold_n: int = 20
             ) -> Path:
    """Kingma & Welling's Figure 4 for a model with a 2-D latent. No randomness."""
    prior = run.model.prior()
    d = prior.mean.shape[-1]
    if d != 2:
        raise NotApplicable(f"the latent manifold needs a 2-D latent and this run's is {d}-D; "
                            "train one with --set latent_dim=2")
    z = latent.manifold_codes(prior, manifold_n)
    y = None
    if getattr(run.model, "conditional", False):
        _, y_test = test_images(run, 1)
        y = y_test.expand(z.shape[0], *y_test.shape[1:]) if y_test is not None else None
    return save_png_grid(decode_mean(run, z, y), out_path, manifold_n)


def principal_components(z: torch.Tensor, q: int = 2) -> torch.Tensor:
    """(N, D) -> (N, q): centred codes projected on their first q principal axes.

    An exact SVD, not torch.pca_lowrank (randomized, from the global RNG); each axis's sign
    is fixed so its largest loading is positive, so the same codes give the same picture.
    """
    zc = z - z.mean(0)
    _, _, vh = torch.linalg.svd(zc, full_matrices=False)  # vh: (min(N, D), D)
    axes = vh[:q]
    sign = torch.sign(axes.gather(1, axes.abs().argmax(1, keepdim=True)))  # (q, 1)
    return zc @ (axes * sign).T


@register_gallery("scatter", needs=frozenset({"encode"}),
                  description="Test codes coloured by class (first two principal components when the "
                              "latent is wider than 2-D).")
@torch.no_grad()
def scatter(run: LoadedRun, out_path: Path, *, generator: torch.Generator) -> Path:
    """Test codes coloured by class (first two principal components when D > 2). No randomness."""
    import pandas as pd
    import seaborn as sns
    from matplotlib import pyplot as plt

    from genbench.figures import save_figure

    x, y = test_images(run, N_STATS)
    z = codes(run, x, y).double().cpu()
    axes = ("z1", "z2")
    if z.shape[1] > 2:
        z, axes = principal_components(z), ("PC1", "PC2")
    df = pd.DataFrame({axes[0]: z[:, 0].numpy(), axes[1]: z[:, 1].numpy()})
    hue = None
    if y is not None and y.dim() == 1:
        df["class"], hue = [str(int(c)) for c in y.cpu()], "class"
    with sns.axes_style("whitegrid"), sns.plotting_context("paper"):
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        sns.scatterplot(df, x=axes[0], y=axes[1], hue=hue, s=8, linewidth=0, palette="tab10",
                        hue_order=sorted(df["class"].unique(), key=int) if hue else None, ax=ax)
        if hue:
            ax.legend(fontsize=6, markerscale=1.5, bbox_to_anchor=(1, 1), loc="upper left")
        return save_figure(fig, out_path)
