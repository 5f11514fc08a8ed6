"""Latent arithmetic, the 2-D manifold, the latent scatter and the analogies hook.

Arithmetic follows Radford et al. (2016), who averaged the latent vectors of a concept,
and Larsen et al. (2016), who edited CelebA attributes with the difference of the mean
codes of faces with and without the attribute. Vectors come from the encoder where there
is one; a model without an encoder (GAN, DCGAN) gets them from its own samples labelled by
genbench's evaluator classifier.
"""

from __future__ import annotations

import torch

from genbench.errors import GenbenchError
from genbench.evaluation import LoadedRun
from genbench.report import latent
from genbench.report.gallery import (
    CELEBA_EDITS,
    N_STATS,
    GalleryOptions,
    codes,
    decode_mean,
    has_encoder,
    test_images,
)


@torch.no_grad()
def latent_stats(run: LoadedRun, seed: int, feature_space: str | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes (N, D), labels): encoded test images, or labelled prior samples without an encoder."""
    if has_encoder(run.model):
        x, y = test_images(run, N_STATS)
        if y is None:
            raise GenbenchError(f"dataset {run.data.info.name!r} has no labels; latent arithmetic "
                                "needs class or attribute labels")
        return codes(run, x, y), y
    torch.manual_seed(seed)
    z = run.model.prior().sample((N_STATS // 2,))  # ~50 labelled samples a class
    return z, classifier_labels(run, decode_mean(run, z), feature_space)


def classifier_labels(run: LoadedRun, x: torch.Tensor, feature_space: str | None) -> torch.Tensor:
    """Labels of generated images from the cached evaluator classifier (never trained here).

    The classifier is the one that measured the run (its ``feature_space`` names the weights'
    hash). Classes (N,) by argmax, or attributes (N, A) in {0, 1} by the sign of the logits.
    """
    from genbench.evaluation import default_cache_dir
    from genbench.metrics import features

    ext = features.find_extractor(run.data, feature_space or "", default_cache_dir())
    if ext is None:
        raise GenbenchError(f"{run.config['model']} has no encoder, and labelling its samples needs "
                            f"the evaluator classifier that measured it ({feature_space or 'none recorded'}"
                            f"); run `genbench features {run.data.info.name} --preset {run.preset.name}`")
    _, logits = ext.net.to(x.device)(x)
    task = ext.task
    return logits.argmax(1) if task == "classes" else (logits > 0).float()


def _start(run: LoadedRun, opts: GalleryOptions, z: torch.Tensor, y: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Codes and labels of the rows to edit, plus their input images (None without an encoder)."""
    if has_encoder(run.model):
        x, _ = test_images(run, opts.n)
        return z[: len(x)], y[: len(x)], x
    return z[: opts.n], y[: opts.n], None


def _target_index(run: LoadedRun, target: str) -> int:
    names = [n.lower() for n in run.data.info.label_names]
    if target.lower() in names:
        return names.index(target.lower())
    if target.isdigit() and int(target) < max(len(names), run.data.info.num_classes or 0):
        return int(target)
    raise GenbenchError(f"unknown class or attribute {target!r}; choose from "
                        f"{', '.join(run.data.info.label_names) or 'none (no labels)'}")


def edit_vectors(run: LoadedRun, z: torch.Tensor, y: torch.Tensor, z0: torch.Tensor,
                 y0: torch.Tensor, opts: GalleryOptions) -> list[tuple[torch.Tensor, float]]:
    """(per-row vector (R, D), strength) for each column of the arithmetic grid."""
    info = run.data.info
    if info.num_classes:
        means = latent.class_means(z, y, info.num_classes)  # (K, D)
        targets = [_target_index(run, opts.target)] if opts.target else range(info.num_classes)
        strengths = [1.0 if opts.strength is None else opts.strength] * len(targets)
        return [(means[k][None] - means[y0.long()], s) for k, s in zip(targets, strengths, strict=True)]
    if opts.target:
        default = dict((a.lower(), s) for a, s in CELEBA_EDITS).get(opts.target.lower(), 1.0)
        edits = [(opts.target, default if opts.strength is None else opts.strength)]
    else:
        edits = default_edits(info.label_names)
    out = []
    for name, strength in edits:
        vec = latent.attribute_vector(z, y[:, _target_index(run, name)])
        out.append((vec[None].expand_as(z0), strength))
    return out


def default_edits(label_names: tuple[str, ...]) -> list[tuple[str, float]]:
    """The seed's CelebA edits present among the attributes, else +3 on the first three."""
    names = [n.lower() for n in label_names]
    found = [(a, s) for a, s in CELEBA_EDITS if a.lower() in names]
    return found or [(n, 3.0) for n in label_names[:3]]


@torch.no_grad()
def arithmetic_images(run: LoadedRun, opts: GalleryOptions) -> tuple[torch.Tensor, int]:
    """Rows: images; columns: [input,] unedited decode, then each edit (or each class)."""
    if getattr(run.model, "conditional", False):
        return analogies_images(run, opts)
    z, y = latent_stats(run, opts.seed, opts.feature_space)
    z0, y0, x0 = _start(run, opts, z, y)
    columns = [] if x0 is None else [x0]
    columns.append(decode_mean(run, latent.apply_edit(z0, torch.zeros_like(z0), 0.0)))
    for vec, strength in edit_vectors(run, z, y, z0, y0, opts):
        columns.append(decode_mean(run, latent.apply_edit(z0, vec, strength)))
    grid = torch.stack(columns, 1)  # (R, columns, C, H, W)
    return grid.flatten(0, 1), grid.shape[1]


@torch.no_grad()
def manifold_images(run: LoadedRun, opts: GalleryOptions) -> tuple[torch.Tensor, int]:
    """Kingma & Welling's Figure 4 for a model with a 2-D latent."""
    prior = run.model.prior()
    d = prior.mean.shape[-1]
    if d != 2:
        raise GenbenchError(f"the latent manifold needs a 2-D latent and this run's is {d}-D; "
                            "train one with --set latent_dim=2")
    z = latent.manifold_codes(prior, opts.manifold_n)
    y = None
    if getattr(run.model, "conditional", False):
        _, y_test = test_images(run, 1)
        y = y_test.expand(z.shape[0], *y_test.shape[1:]) if y_test is not None else None
    return decode_mean(run, z, y), opts.manifold_n


@torch.no_grad()
def analogies_images(run: LoadedRun, opts: GalleryOptions) -> tuple[torch.Tensor, int]:
    """The conditional models' style grid from genbench.report.analogies: one assembled image."""
    try:
        from genbench.report import analogies
    except ImportError:
        raise GenbenchError("analogies need genbench/report/analogies.py (conditional models)") from None
    if not getattr(run.model, "conditional", False):
        raise GenbenchError(f"{run.config['model']} is not conditional; analogies need a model "
                            "that takes labels (cvae, m2)")
    x, y = test_images(run, N_STATS)
    if y is None:
        raise GenbenchError(f"dataset {run.data.info.name!r} has no labels; analogies need them")
    pick = getattr(analogies, "dataset_analogies", None)
    if pick is not None:  # one test image of each class per row: different styles
        grid = pick(run.model, x, y, rows=opts.n)
    else:
        grid = analogies.analogies_grid(run.model, x[: opts.n], y[: opts.n])
    return grid[None], 1  # (1, C, H', W'): make_grid returns a single image unchanged


@torch.no_grad()
def latent_scatter(run: LoadedRun, path):
    """Test codes coloured by class (first two principal components when D > 2)."""
    import pandas as pd
    import seaborn as sns
    from matplotlib import pyplot as plt

    from genbench.report.plots import save_small

    if not has_encoder(run.model):
        raise GenbenchError(f"{run.config['model']} has no encoder, so no latent scatter")
    x, y = test_images(run, N_STATS)
    z = codes(run, x, y).float().cpu()
    axes = ("z1", "z2")
    if z.shape[1] > 2:
        _, _, v = torch.pca_lowrank(z, q=2, center=True)
        z = (z - z.mean(0)) @ v[:, :2]  # (N, D) -> (N, 2)
        axes = ("PC1", "PC2")
    df = pd.DataFrame({axes[0]: z[:, 0].numpy(), axes[1]: z[:, 1].numpy()})
    hue = None
    if y is not None and y.dim() == 1:
        df["class"], hue = [str(int(c)) for c in y.cpu()], "class"
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    sns.scatterplot(df, x=axes[0], y=axes[1], hue=hue, s=8, linewidth=0, palette="tab10",
                    hue_order=sorted(df["class"].unique(), key=int) if hue else None, ax=ax)
    if hue:
        ax.legend(fontsize=6, markerscale=1.5, bbox_to_anchor=(1, 1), loc="upper left")
    return save_small(fig, path)
