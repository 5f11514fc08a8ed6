"""Reference rows that are adversaries of the metrics (the fooling generator): marked, not ranked.

A model class may declare ``reference_row`` (why its row is a reference, not a competitor:
"adversarial: games the classifier") and ``games`` (the result keys it optimizes for). The
report reads them off the registry, as it reads ``conditional``: the row's label says it, its
gamed numbers are flagged, it is never bold, and the section "What the metrics say, and what
they do not" gets one sentence per group saying, from the numbers, which metrics the adversary
fooled (as good as real images, the real-versus-real floor, or better than every trained
model) and which it did not.
"""

from __future__ import annotations

import pandas as pd

from genbench.registry import MODELS
from genbench.report import configs

DECISION = frozenset({"inception_score", "classes_covered", "mode_kl"})  # read argmax/softmax only
GAMED = "⚠ gamed: optimized against this very classifier"
GAMED_CAPTION = ("A reference row is never ranked; ⚠ gamed marks a number its model optimized the "
                 "evaluator classifier for (see 'What the metrics say, and what they do not').")
# the sample metrics the sentence weighs, in the order it names them
WEIGHED = ("inception_score", "classes_covered", "mode_kl", "fid", "kid", "precision", "density",
           "coverage")


def _names(runs: pd.DataFrame, label: str) -> set[str]:
    """The registry names behind a row label (``fooling (encoding=cppn)`` -> {"fooling"})."""
    col = configs.NAME if configs.NAME in runs else "model"
    return {str(n) for n in runs.loc[runs["model"] == label, col]}


def reference_note(runs: pd.DataFrame, label: str) -> str | None:
    """The row's ``reference_row`` declaration, or None for a competing model."""
    for name in sorted(_names(runs, label)):
        entry = MODELS.get(name)
        if entry is not None and isinstance(note := getattr(entry.cls, "reference_row", None), str):
            return note
    return None


def gamed(runs: pd.DataFrame, label: str) -> frozenset[str]:
    """The result keys the row's model declares it games."""
    keys: set[str] = set()
    for name in _names(runs, label):
        entry = MODELS.get(name)
        if entry is not None and reference_note(runs, label):
            keys |= set(getattr(entry.cls, "games", ()))
    return frozenset(keys)


def references(runs: pd.DataFrame) -> set[str]:
    """The row labels of reference rows in ``runs``."""
    return {str(m) for m in set(runs["model"]) if reference_note(runs, str(m))}
