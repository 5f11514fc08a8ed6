"""What `genbench list` shows: each registered entry with one line of description."""

from __future__ import annotations

from genbench.errors import GenbenchError
from genbench.presets import PRESETS
from genbench.registry import DATASETS, METRICS, MODELS

KINDS = ("models", "datasets", "metrics", "presets")


def sections(what: str) -> list[tuple[str, list[tuple[str, str]]]]:
    if what not in (*KINDS, "all"):
        raise GenbenchError(f"unknown list {what!r}; use one of {', '.join(KINDS)} or all")
    out = []
    for kind in KINDS if what == "all" else (what,):
        out.append((kind, ROWS[kind]()))
    return out


def _models() -> list[tuple[str, str]]:
    return [(n, e.description) for n, e in sorted(MODELS.items())]


def _datasets() -> list[tuple[str, str]]:
    return [(n, e.description) for n, e in sorted(DATASETS.items())]


def _metrics() -> list[tuple[str, str]]:
    rows = []
    for entry in METRICS.values():
        needs = f" [dim](needs {', '.join(sorted(entry.needs))})[/]" if entry.needs else ""
        for key, text in entry.produces.items():
            better = {True: "[green]↑ higher is better[/]  ", False: "[green]↓ lower is better[/]  ",
                      None: ""}[entry.higher_is_better.get(key)]
            rows.append((key, f"{better}{text}  [dim]--metrics {entry.name}[/]{needs}"))
    return rows


def _presets() -> list[tuple[str, str]]:
    return [(n, p.description) for n, p in PRESETS.items()]


ROWS = {"models": _models, "datasets": _datasets, "metrics": _metrics, "presets": _presets}
