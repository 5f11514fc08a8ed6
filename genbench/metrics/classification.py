"""Test error of a model's own classifier q(y|x) (M2: Kingma et al. 2014, Table 1).

The error is the fraction of test images whose most probable class is wrong, with the
binomial standard error sqrt(p (1 - p) / n). It is measured on the whole test split (the
paper's protocol; classifying is cheap), binarized/dequantized once like every other
metric's test data. For a semi-supervised model the metric also reports the size and
per-class counts of the labelled subset it was trained with, the other half of the result;
:func:`labelled_subset` is the full record, which the evaluator writes to the run folder
(metrics never write files).
"""

from __future__ import annotations

import math

import torch

from genbench.errors import GenbenchError
from genbench.metrics.context import EvalContext
from genbench.registry import ResultKey, register_metric

IMAGE_CHUNK = 1024  # images per forward pass: memory only, never the answer
LABELLED_FILE = "labelled_subset.json"


@torch.no_grad()
def predict_classes(model: torch.nn.Module, x: torch.Tensor, chunk: int = IMAGE_CHUNK) -> torch.Tensor:
    """The most probable class under ``model.classify`` for each image (N,)."""
    return torch.cat([model.classify(x[i : i + chunk]).probs.argmax(-1)
                      for i in range(0, x.shape[0], chunk)])


def error_rate(pred: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(fraction misclassified, its binomial standard error sqrt(p (1 - p) / n))."""
    if pred.shape != y.shape or y.numel() == 0:
        raise ValueError(f"predictions {tuple(pred.shape)} and labels {tuple(y.shape)} must match")
    p = float((pred != y).double().mean())
    return p, math.sqrt(p * (1 - p) / y.numel())


def labelled_record(model: torch.nn.Module) -> dict[str, float]:
    """Size and balance of a semi-supervised model's labelled subset ({} for others)."""
    counts = getattr(model, "labelled_counts", None)
    if not callable(counts):
        return {}
    c = counts().cpu()
    return {"labelled_examples": float(c.sum()), "labelled_per_class_min": float(c.min()),
            "labelled_per_class_max": float(c.max())}


CLASSIFICATION_KEYS = (
    ResultKey("test_error",
              label="test error",
              caveat=("The classification error of q(y|x) on the test set (M2, Kingma et al. 2014). It"
                      " depends strongly on how many labels were used in training."),
              direction="lower",
              unit="fraction",
              section="Classification",
              stderr=True,
              headline=6,
              best_text="test error"),
    ResultKey("labelled_examples",
              label="labelled_examples",
              caveat=("How many training images a semi-supervised model saw with their label. Compare "
                      "test errors only at the same count."),
              direction="unranked",
              unit="images",
              section="Classification"),
    *(ResultKey(f"labelled_per_class_{end}",
                label=f"labels per class ({end})",
                caveat=(f"The {'fewest' if end == 'min' else 'most'} labelled training images of one "
                        "class: a check that the labelled set is balanced."),
                unit="images",
                section="Classification") for end in ("min", "max")),
)


@register_metric(
    "classification",
    keys=CLASSIFICATION_KEYS,
    needs={"classify"},
    produces={
        "test_error": "fraction of test images the model's classifier q(y|x) gets wrong",
        "labelled_examples": "labelled training images a semi-supervised model was given",
        "labelled_per_class_min": "fewest labelled images of one class (balance check)",
        "labelled_per_class_max": "most labelled images of one class (balance check)",
    },
    higher_is_better={"test_error": False},
    description="test error of the model's classifier (M2 of Kingma et al. 2014)",
)
def classification_metric(ctx: EvalContext) -> dict[str, float]:
    y = ctx.data.eval_y("test")
    if y is None or y.dim() != 1:
        raise GenbenchError(f"{ctx.data.info.name} has no class labels to score a classifier on")
    err, stderr = error_rate(predict_classes(ctx.model, ctx.data.eval_x("test")), y)
    return {"test_error": err, "test_error_stderr": stderr, **labelled_record(ctx.model)}


def labelled_subset(model: torch.nn.Module) -> dict[str, object] | None:
    """Which training images a semi-supervised model had labels for (None for other models):
    the record its evaluator writes to the run folder as ``LABELLED_FILE``."""
    if not hasattr(model, "labelled_index"):
        return None
    return {
        "train_indices": model.labelled_index.cpu().tolist(),
        "per_class": model.labelled_counts().cpu().tolist(),
        "label_seed": int(getattr(model.config, "label_seed", -1)),
    }
