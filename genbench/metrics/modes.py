"""Metrics on the evaluator classifier's outputs: Inception Score and mode coverage.

- ``inception_score`` (Salimans et al. 2016) is exp(E_x KL(p(y|x) || p(y))), here with the
  dataset's own classifier instead of InceptionV3 (the "classifier-based" score of many
  MNIST papers): high when each sample is confidently one class and the classes are
  balanced. Its maximum is the number of classes.
- ``mode_kl`` is KL(q || p) between the histogram q of the classes predicted for the
  samples and the data's class distribution p: 0 for a generator that hits every class in
  the right proportion, log(10) for one that draws a single class of ten balanced ones.
- ``classes_covered`` counts the classes whose share among the samples is at least
  ``min_share`` (default 10%) of their share in the data, so a few stray
  misclassifications do not count a dropped mode as covered.
"""

from __future__ import annotations

import math

import torch

from genbench.metrics.finite import require_finite


def class_histogram(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (K,) float64 of the predicted classes (argmax) of logits (N, K); refuses NaN or
    inf logits (argmax would pick the NaN: a wrong histogram, a finite mode_kl)."""
    require_finite(logits, "logit rows")
    return torch.bincount(logits.argmax(1), minlength=num_classes).to(torch.float64)


def mode_kl(counts: torch.Tensor, reference: torch.Tensor) -> float:
    """KL(q || p) in nats, q = counts normalised, p = ``reference`` probabilities (K,)."""
    require_finite(counts, "class counts")
    require_finite(reference, "reference probabilities")
    q = counts / counts.sum()
    p = reference.to(q)
    terms = torch.where(q > 0, q * (q.clamp_min(1e-300).log() - p.clamp_min(1e-300).log()), 0.0)
    return float(terms.sum())


def classes_covered(counts: torch.Tensor, reference: torch.Tensor, min_share: float = 0.1) -> int:
    """Classes whose sample share reaches ``min_share`` times their data share."""
    require_finite(counts, "class counts")
    q = counts / counts.sum()
    p = reference.to(q)
    return int(((q >= min_share * p) & (counts > 0)).sum())


def inception_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """(IS over all samples, standard error from ``splits`` disjoint splits).

    The value uses every sample (less biased than the mean of split scores); the
    standard error is the split scores' standard deviation over sqrt(splits).
    """
    require_finite(logits, "logit rows")
    logp = torch.log_softmax(logits.to(torch.float64), dim=1)  # (N, K)
    score = _is_from_logp(logp)
    splits = min(splits, logp.shape[0])
    if splits < 2:
        return score, float("nan")
    parts = torch.tensor([_is_from_logp(part) for part in logp.chunk(splits)])
    return score, float(parts.std(unbiased=True)) / math.sqrt(splits)


def _is_from_logp(logp: torch.Tensor) -> float:
    log_marginal = torch.logsumexp(logp, dim=0) - math.log(logp.shape[0])  # log p(y), (K,)
    kl = (logp.exp() * (logp - log_marginal)).sum(1)  # KL(p(y|x) || p(y)) per sample
    return math.exp(float(kl.mean()))
