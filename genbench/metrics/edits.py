"""``edits``: are attribute edits what was asked for? Measured on the edited images.

For each attribute a, the test images are edited by a range of requests d (``DELTAS``: -2 ..
+2 training sd for a measured attribute, -1 .. +1 for a binary one) through
:mod:`genbench.kit.edits` (the model's own hook, CVAE's condition, or latent arithmetic), and the
edited images are measured again: Morpho-MNIST's measures (:mod:`genbench.data.morpho`) on
``*-morpho`` data, the evaluator's attribute probabilities on CelebA. Changes are taken
against the zero edit (the model's reconstruction), so a blurry reconstruction does not
count as an edit, and expressed in the units of the request (sd, or probability).

- ``edit_slope_<a>``: least-squares slope of the achieved change on the requested one over
  all (image, request) pairs; 1 is an edit that does exactly what was asked, 0 none;
- ``edit_corr_<a>``: their correlation (does a larger request give a larger change?);
- ``edit_entanglement``: mean absolute change of the *other* attributes per unit requested,
  over attributes, requests and images (0: the edit touches nothing else);
- ``edit_identity``: the fraction of edited digits whose evaluator class is the one of the
  reconstruction (MNIST-like data; CelebA has no classes).

The pure cores (:func:`response`, :func:`entanglement`, :func:`identity`,
:func:`measure_edits`) take tensors and callables; the adapter wires them to a model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from genbench.data import morpho, render3d
from genbench.errors import GenbenchError
from genbench.kit.edits import Editor, dataset_attributes, edit_method, make_editor
from genbench.metrics.context import EvalContext
from genbench.registry import ResultKey, register_metric

DELTAS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # requests in training sd (measured attributes)
BINARY_DELTAS = (-1.0, -0.5, 0.0, 0.5, 1.0)  # requests on a {0, 1} attribute's value
N_IMAGES = 100  # test images edited (capped by the preset's n_eval)
CELEBA_EDITS = ("Smiling", "Male", "Young", "Eyeglasses")  # the deck's (Suzuki et al. Fig. 6)


# -- pure cores -----------------------------------------------------------------------------
def response(requested: torch.Tensor, achieved: torch.Tensor) -> tuple[float, float]:
    """(slope, correlation) of achieved changes (R, N) on requests (R,), over all R*N pairs."""
    d = requested[:, None].expand_as(achieved).flatten().double()
    a = achieved.flatten().double()
    dc, ac = d - d.mean(), a - a.mean()
    slope = float((dc * ac).sum() / (dc * dc).sum().clamp_min(1e-12))
    denom = float((dc.pow(2).sum() * ac.pow(2).sum()).sqrt())
    return slope, (float((dc * ac).sum()) / denom if denom > 0 else 0.0)


def entanglement(requested: torch.Tensor, others: torch.Tensor) -> float:
    """Mean |change| of the other attributes per unit requested: requests (R,), changes
    (R, N, A-1); zero requests are left out."""
    keep = requested != 0
    if not keep.any() or others.shape[-1] == 0:
        return 0.0
    per = others[keep].abs() / requested[keep].abs()[:, None, None]
    return float(per.mean())


def identity(reference: torch.Tensor, edited: torch.Tensor) -> float:
    """Fraction of edited predictions (R, N) equal to the reference's (N,)."""
    return float((edited == reference[None]).float().mean())


def measure_edits(edit: Callable[[str, float], torch.Tensor], names: Sequence[str],
                  targets: Sequence[str], deltas: Sequence[float],
                  measure: Callable[[torch.Tensor], torch.Tensor],
                  classify: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, float]:
    """The metric for an editor ``edit(attribute, delta) -> images`` (N, C, H, W).

    ``measure(images) -> (N, A)`` in request units, columns in ``names`` order; ``targets``
    are the attributes edited; ``classify(images) -> (N,)`` classes for identity, or None.
    """
    requested = torch.tensor([d for d in deltas if d != 0], dtype=torch.float64)
    base = edit(targets[0], 0.0)  # the zero edit: the reconstruction
    m0 = measure(base).double()
    c0 = classify(base) if classify else None
    out: dict[str, float] = {}
    tangled, same = [], []
    for done, name in enumerate(targets):
        if progress:
            progress(done, len(targets))
        j = names.index(name)
        images = [edit(name, float(d)) for d in requested]
        changes = torch.stack([measure(im).double() - m0 for im in images])  # (R, N, A)
        slope, corr = response(requested, changes[:, :, j])
        key = name.lower().replace(" ", "_")
        out[f"edit_slope_{key}"], out[f"edit_corr_{key}"] = slope, corr
        others = torch.cat([changes[:, :, :j], changes[:, :, j + 1:]], 2)
        tangled.append(entanglement(requested, others))
        if classify:
            same.append(identity(c0, torch.stack([classify(im) for im in images])))
    if progress:
        progress(len(targets), len(targets))
    out["edit_entanglement"] = sum(tangled) / len(tangled)
    if classify:
        out["edit_identity"] = sum(same) / len(same)
    return out


# -- the adapter ----------------------------------------------------------------------------
def _targets(editor: Editor) -> tuple[str, ...]:
    names = editor.attributes.names
    if all(editor.attributes.binary):  # CelebA: the deck's edits, else the first four
        lower = {n.lower(): n for n in names}
        found = tuple(lower[a.lower()] for a in CELEBA_EDITS if a.lower() in lower)
        return found or names[:4]
    return names


def _extractor(ctx: EvalContext):
    from genbench.metrics.features import load_or_train_extractor

    return load_or_train_extractor(ctx.data, epochs=ctx.preset.feature_epochs,
                                   cache_dir=ctx.cache_dir)


def edits_adapter(ctx: EvalContext) -> dict[str, float]:
    dataset_attributes(ctx.data)  # n/a before any work on data without attributes
    edit_method(ctx.model)
    ext = _extractor(ctx)  # trained (with gradients) on first use, then cached
    with torch.no_grad():
        return _edits(ctx, ext)


def _edits(ctx: EvalContext, ext) -> dict[str, float]:
    data = ctx.data
    editor = make_editor(ctx.model, data)
    n = min(N_IMAGES, ctx.preset.n_eval or N_IMAGES, len(data.test))
    x, y = data.eval_x("test", n), data.eval_y("test", n)
    measures = None if data.test.measures is None else data.test.measures[:n]
    attrs = editor.attributes

    def edit(name: str, delta: float) -> torch.Tensor:
        return editor.edit(x, name, delta, y=y, measures=measures)

    if all(attrs.binary):  # CelebA: the attribute classifier's probabilities
        if ext.task != "attributes":
            raise GenbenchError("binary attribute edits are measured by an attribute classifier")

        def measure(images: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(ext(images)[1]).cpu()

        return measure_edits(edit, attrs.names, _targets(editor), BINARY_DELTAS, measure,
                             progress=ctx.tracker("attributes"))
    measure_raw, trust = _measurer(ctx, attrs.names)
    scale = attrs.scale.cpu().double()

    def measure_sd(images: torch.Tensor) -> torch.Tensor:
        return measure_raw(images).double() / scale

    def classify(images: torch.Tensor) -> torch.Tensor:
        return ext(images)[1].argmax(1).cpu()

    return {**measure_edits(edit, attrs.names, _targets(editor), DELTAS, measure_sd,
                            classify if ext.task == "classes" else None, ctx.tracker("attributes")),
            **trust}


def _measurer(ctx: EvalContext, names: Sequence[str]
              ) -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, float]]:
    """(images -> (N, A) raw values of ``names``, what says how far to trust them): Morpho-MNIST's
    code for measured strokes; for set factors (rendered data) the regressor of
    :mod:`genbench.metrics.factors`, with its test R^2 per factor (``edit_r2_<factor>``)."""
    if all(a in morpho.MEASURES for a in names):
        cols = [morpho.MEASURES.index(a) for a in names]
        return (lambda images: morpho.measure(images)[:, cols]), {}
    from genbench.metrics.factors import load_or_train_regressor

    with torch.enable_grad():
        reg, r2 = load_or_train_regressor(ctx.data, epochs=ctx.preset.feature_epochs,
                                          cache_dir=ctx.cache_dir)
    trust = {f"edit_r2_{a.lower()}": float(v) for a, v in zip(names, r2, strict=True)}
    return (lambda images: reg(images).cpu()), trust


_KEYS = {f"edit_{kind}_{a.lower()}": f"{what} of {a} edits (achieved vs requested change)"
         for a in (*morpho.MEASURES, *render3d.FACTORS, *CELEBA_EDITS)
         for kind, what in (("slope", "least-squares slope"), ("corr", "correlation"))}
_KEYS.update({f"edit_r2_{a}": f"test R^2 of the regressor that reads {a} off an edited image "
               "(rendered data: how far its edit measures can be trusted)" for a in render3d.FACTORS})
_KEYS["edit_entanglement"] = "mean |change| of the other attributes per unit requested"
_KEYS["edit_identity"] = "fraction of edited digits keeping the evaluator's class"

EDITS_KEYS = (
    ResultKey("edit_entanglement",
              label="entanglement",
              caveat=("The mean absolute change of the other measured attributes per standard "
                      "deviation requested, over attributes, requests and images (lower is better; 0: "
                      "an edit touches nothing else). Latent arithmetic drags correlated attributes "
                      "along."),
              direction="lower",
              section="Attribute edits"),
    ResultKey("edit_identity",
              label="identity kept",
              caveat=("The share of edited digits the evaluator classifies as the reconstruction's "
                      "digit. An edit that changes a 4 into a 9 has moved more than its attribute."),
              direction="higher",
              unit="fraction",
              section="Attribute edits"),
    ResultKey("edit_slope_",
              label="{a} slope",
              caveat=("The least-squares slope of the achieved change of {a} (measured on the edited "
                      "image, in training sd) on the requested change: 1 is an edit that does what was"
                      " asked, 0 none, above 1 overshoots. Decoded means are blurrier than the inputs,"
                      " which pulls slopes below 1."),
              direction="unranked",
              section="Attribute edits",
              prefix=True),
    ResultKey("edit_corr_",
              label="{a} corr",
              caveat=("The correlation of the achieved change of {a} with the requested one over all "
                      "images and requests: whether a larger request gives a larger change, whatever "
                      "the scale."),
              direction="higher",
              section="Attribute edits",
              prefix=True),
    ResultKey("edit_r2_",
              label="{a} measured (R²)",
              caveat=("On rendered data (synthetic-3d) the factor {a} of an edited image is read by a "
                      "regressor trained on the training images' set factors; this is its test R^2, "
                      "the same for every model on the data: an edit slope is only as good as it."),
              direction="unranked",
              section="Attribute edits",
              prefix=True),
)


register_metric(
    "edits", needs={"encode"}, produces=_KEYS,
    keys=EDITS_KEYS,
    higher_is_better={**{k: True for k in _KEYS}, "edit_entanglement": False},
    description="attribute edits measured on the edited images (Morpho-MNIST measures or "
                "the CelebA attribute classifier): slope, correlation, entanglement, identity",
)(edits_adapter)
