"""Runs -> configurations: what a run's settings are, which runs may be pooled over seeds,
and how a row is named when two configurations of one model sit in one folder.

A group of seeds is (dataset, variant, preset, model, resolved settings minus the seed): the
model's config fields and the preset's settings as ``config.json`` records them after every
``--set``. Runs that differ in any setting are separate rows, labelled with what differs
(``vae (latent_dim=2, lr=0.01)``). Two runs of the same configuration and seed are one
measurement made twice: the newest counts and the older is reported as superseded, never
averaged in as a second seed (that would fake a seed spread).

Read by the report (:mod:`genbench.report.tables`) and the Python API, so both group alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

# preset fields that do not change what a run measures: its name (already in the group),
# its prose, and the metric list of `--metrics` (a subset of the same measurements)
_NOT_SETTINGS = frozenset({"name", "description", "metrics"})
# columns this module adds to a frame of runs
LABEL, NAME, KEY, SETTINGS, SUPERSEDED = "model", "model_name", "config_key", "settings", "superseded"


def settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved settings of one run's config.json: model config fields, then preset
    settings (a field in both, such as ``epochs``, is the model's)."""
    preset = {k: v for k, v in (config.get("preset") or {}).items() if k not in _NOT_SETTINGS}
    return {**preset, **(config.get("model_config") or {})}


def config_key(model: str, values: Mapping[str, Any]) -> str:
    """A stable text identity of (model, settings): equal exactly when the settings are."""
    return json.dumps([model, values], sort_keys=True, default=str)


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return str(value)


def differing(all_settings: list[Mapping[str, Any]]) -> list[str]:
    """Setting names whose value is not the same in every one of ``all_settings``."""
    names = sorted({k for s in all_settings for k in s})
    return [k for k in names
            if len({json.dumps(s.get(k), sort_keys=True, default=str) for s in all_settings}) > 1]


def label(model: str, values: Mapping[str, Any], names: list[str]) -> str:
    """``vae`` alone, or ``vae (latent_dim=2, lr=0.01)`` with the settings in ``names``."""
    if not names:
        return model
    return f"{model} ({', '.join(f'{k}={_show(values.get(k))}' for k in names)})"


def annotate(df: pd.DataFrame, configs: list[Mapping[str, Any]],
             group: tuple[str, ...] = ("dataset", "variant", "preset")) -> pd.DataFrame:
    """``df`` (one row per run, ``model`` the registry name) with the configuration columns.

    ``model_name`` keeps the registry name; ``model`` becomes the row label (the name, plus
    the settings that differ among that model's configurations in the same ``group``);
    ``config_key`` identifies the configuration; ``settings`` holds the resolved settings;
    ``superseded`` is True for an older run of a (configuration, seed) that has a newer one.
    """
    df = df.copy()
    values = [settings(c) for c in configs]
    df[NAME] = df["model"]
    df[SETTINGS] = values
    df[KEY] = [config_key(m, v) for m, v in zip(df["model"], values, strict=True)]
    labels = pd.Series(df["model"], index=df.index, dtype=object)
    for _, sub in df.groupby([*group, NAME], sort=False, dropna=False):
        unique = {k: s for k, s in zip(sub[KEY], sub[SETTINGS], strict=True)}
        names = differing(list(unique.values())) if len(unique) > 1 else []
        for i in sub.index:
            labels[i] = label(str(df.at[i, NAME]), df.at[i, SETTINGS], names)
    df[LABEL] = labels
    df[SUPERSEDED] = _superseded(df, group)
    return df


def _written(run_dir: Any) -> float:
    """When a run last wrote its results (metrics.json, else config.json): newest counts."""
    for name in ("metrics.json", "config.json"):
        try:
            return (Path(str(run_dir)) / name).stat().st_mtime
        except OSError:
            continue
    return 0.0


def _superseded(df: pd.DataFrame, group: tuple[str, ...]) -> pd.Series:
    """True for every run but the newest among runs of one configuration and seed.

    A finished run beats an unfinished one whatever their ages: a rerun in progress never
    hides the number it is remaking."""
    out = pd.Series(False, index=df.index)
    finished = (df["status"] == "finished") if "status" in df else pd.Series(True, index=df.index)
    order = pd.DataFrame({"fin": finished, "t": [_written(d) for d in df.get("run_dir", [])]},
                         index=df.index)
    for _, sub in df.groupby([*group, KEY, "seed"], sort=False, dropna=False):
        if len(sub) > 1:
            keep = order.loc[sub.index].sort_values(["fin", "t"]).index[-1]
            out[sub.index.difference([keep])] = True
    return out


def superseded_notes(df: pd.DataFrame) -> list[str]:
    """One line per (configuration, seed) measured more than once: which run counts."""
    if SUPERSEDED not in df or not df[SUPERSEDED].any():
        return []
    notes = []
    for (model, seed), sub in df.groupby([LABEL, "seed"], sort=True, dropna=False):
        old = sub[sub[SUPERSEDED]]
        if old.empty:
            continue
        kept = sub[~sub[SUPERSEDED]]["run_dir"]
        kept_name = Path(str(kept.iloc[0])).name if len(kept) else "?"
        names = ", ".join(f"`{Path(str(d)).name}`" for d in old["run_dir"])
        notes.append(f"{model} seed {seed}: {len(sub)} runs of the same configuration and seed; the "
                     f"newest (`{kept_name}`) counts, not pooled as a second seed; ignored: {names}.")
    return notes


def differences_rows(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(row label, its resolved settings that differ from the model's other rows), for models
    with more than one configuration in ``df``."""
    out = []
    for _, sub in df.groupby(NAME, sort=True):
        unique = {k: (lab, s) for k, lab, s in zip(sub[KEY], sub[LABEL], sub[SETTINGS], strict=True)}
        if len(unique) < 2:
            continue
        names = differing([s for _, s in unique.values()])
        for lab, s in sorted(unique.values(), key=lambda t: t[0]):
            out.append((lab, ", ".join(f"{k}={_show(s.get(k))}" for k in names)))
    return out
