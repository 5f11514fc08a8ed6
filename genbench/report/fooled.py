"""What an adversary's row says about the metrics: which it fooled, which held, in words for
the report's "What the metrics say, and what they do not" section (computed from the runs)."""

from __future__ import annotations

import pandas as pd

from genbench.report import glossary, tables
from genbench.report.adversarial import DECISION, WEIGHED, reference_note, references


def _mean(runs: pd.DataFrame, key: str) -> float | None:
    s = tables.stats(runs, key)
    return s.mean if s is not None else None


def _fmt(key: str, x: float) -> str:
    if key == "classes_covered":
        return f"{x:.0f}"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def fooled_sentences(df: pd.DataFrame) -> list[str]:
    """Per (dataset, variant, preset) group and reference row: which metrics it fooled, which
    it did not, with its numbers beside the real-versus-real floor's and the best trained model's.
    A metric is fooled when the reference row scores at least as well as real images do (the
    floor) or better than every trained model."""
    out = []
    fin = tables.finished(df)
    for (dataset, variant, preset), runs in tables.groups(fin):
        for ref in sorted(references(runs)):
            mine = runs[runs["model"] == ref]
            space = tables.feature_spaces(mine)[0]  # compared within its feature space only
            same = tables.in_space(runs, space)
            others = same[~same["model"].isin(references(same))]
            floor = tables.floor_from_metrics(mine)
            fooled, held, fooled_keys, held_keys = [], [], [], []
            for key in WEIGHED:
                value, higher = _mean(mine, key), glossary.direction(key)
                if value is None or higher is None:
                    continue
                means = {m: v for m in set(others["model"])
                         if (v := _mean(others[others["model"] == m], key)) is not None}
                best = (max if higher else min)(means, key=means.__getitem__) if means else None
                if key not in floor and best is None:
                    continue
                # fooled: as good as real images (the floor), or better than every trained model
                beats = [value >= x if higher else value <= x for x in [floor[key]] if key in floor]
                beats += [value > means[best] if higher else value < means[best]] if best else []
                said = [f"real images {_fmt(key, floor[key])}"] if key in floor else []
                said += [f"best trained model {best} {_fmt(key, means[best])}"] if best else []
                worse = sum(v < value if higher else v > value for v in means.values())
                if best and not any(beats) and worse:  # held against the best, not against all
                    said.append(f"better than {worse} of {len(means)} trained models")
                part = f"{glossary.label(key)} {_fmt(key, value)} ({'; '.join(said)})"
                (fooled if any(beats) else held).append(part)
                (fooled_keys if any(beats) else held_keys).append(key)
            if not fooled and not held:
                continue
            where = f"{dataset} · {variant} · preset {preset}"
            text = f"On {where}, the reference row {ref} ({reference_note(runs, ref)})"
            text += (f" fools {'; '.join(fooled)}" if fooled else " fools none of the sample metrics")
            text += (f", and does not fool {'; '.join(held)}." if held else ".")
            if fooled and held and set(fooled_keys) <= DECISION and not set(held_keys) & DECISION:
                text += (" The metrics it fools read only the classifier's decision; those it does "
                         "not read the classifier's features, where its images are unlike the data.")
            out.append(text)
    return out
