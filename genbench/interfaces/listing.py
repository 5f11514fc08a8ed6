"""What `genbench list` shows: each registered entry with one line of description."""

from __future__ import annotations

import re

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


def _numbered(produces: dict[str, str]) -> list[tuple[str, str, str]]:
    """(shown name, first key, text): keys that differ only in a trailing number and share
    their text (compression_bits_1 .. compression_bits_64) become one row, prefix_<t>."""
    groups: dict[tuple[str, str], list[int]] = {}
    rows: list[tuple[str, str, str]] = []
    for key, text in produces.items():
        match = re.fullmatch(r"(.+_)(\d+)", key)
        if match is None:
            rows.append((key, key, text))
            continue
        group = groups.setdefault((match[1], text), [])
        if not group:
            rows.append((match[1], key, text))  # named below, once the numbers are known
        group.append(int(match[2]))
    named = []
    for shown, key, text in rows:
        if key != shown:  # a lone numbered key keeps its name
            numbers = groups[(shown, text)]
            shown, text = ((f"{shown}<t>", f"{text} (t = {min(numbers)}..{max(numbers)})")
                           if len(numbers) > 1 else (key, text))
        named.append((shown, key, text))
    return named


def _metrics() -> list[tuple[str, str]]:
    rows = []
    for entry in METRICS.values():
        needs = f" [dim](needs {', '.join(sorted(entry.needs))})[/]" if entry.needs else ""
        families = [(f"{k.name}<t>" if k.name.startswith("compression") else f"{k.name}<attribute>",
                     k.text, k.higher_is_better) for k in entry.keys if k.prefix and k.text]
        numbered = [(shown, text, entry.higher_is_better.get(key))
                    for shown, key, text in _numbered(dict(entry.produces))]
        for shown, text, up in [*families, *numbered]:
            better = {True: "[green]↑ higher is better[/]  ", False: "[green]↓ lower is better[/]  ",
                      None: ""}[up]
            rows.append((shown, f"{better}{text}  [dim]--metrics {entry.name}[/]{needs}"))
    return rows


def _presets() -> list[tuple[str, str]]:
    return [(n, p.description) for n, p in PRESETS.items()]


ROWS = {"models": _models, "datasets": _datasets, "metrics": _metrics, "presets": _presets}
