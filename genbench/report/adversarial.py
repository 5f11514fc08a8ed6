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

DECISION = frozenset({"inception_score", "classes_covered", "mode_kl"})  # read argmax/softmax only
GAMED = "⚠ gamed: optimized against this very classifier"
GAMED_CAPTION = ("A reference row is never ranked; ⚠ gamed marks a number its model optimized the "
                 "evaluator classifier for (see 'What the metrics say, and what they do not').")
# the sample metrics the sentence weighs, in the order it names them
WEIGHED = ("inception_score", "classes_covered", "mode_kl", "fid", "kid", "precision", "density",
           "coverage")


def _declared(runs: pd.DataFrame, label: str, column: str) -> list:
    """The row's recorded declarations in ``column`` (config.json, written by the runner)."""
    if column not in runs:
        return []
    return [v for v in runs.loc[runs["model"] == label, column] if isinstance(v, (str, tuple)) and v]


def reference_note(runs: pd.DataFrame, label: str) -> str | None:
    """The row's ``reference_row`` declaration, or None for a competing model."""
    notes = sorted(str(n) for n in _declared(runs, label, "reference_row"))
    return notes[0] if notes else None


def gamed(runs: pd.DataFrame, label: str) -> frozenset[str]:
    """The result keys the row's model declares it games."""
    if reference_note(runs, label) is None:
        return frozenset()
    return frozenset(k for keys in _declared(runs, label, "games") for k in keys)


def references(runs: pd.DataFrame) -> set[str]:
    """The row labels of reference rows in ``runs``."""
    return {str(m) for m in set(runs["model"]) if reference_note(runs, str(m))}
