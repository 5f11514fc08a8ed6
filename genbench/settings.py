"""Resolving a run's settings: preset < the model's per-preset overrides < --epochs/--set.

``--set KEY=VALUE`` keys live in one flat namespace: the model's ``Config`` fields and the
preset's fields (``batch_size``, ``iwae_k``, ...). Values are parsed by the field's type.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from genbench.errors import GenbenchError, UnknownName
from genbench.presets import PRESET_KEYS, Preset


def config_fields(config_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls)}


def parse_value(raw: str, current: Any, key: str) -> Any:
    """Parse ``raw`` to the type of ``current`` (the default): int, float, bool, tuple, str."""
    try:
        if isinstance(current, bool):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if isinstance(current, int) or (current is None and raw.isdigit()):
            return int(raw)
        if isinstance(current, float):
            return float(raw)
        if isinstance(current, tuple):
            items = [s for s in raw.replace("(", "").replace(")", "").split(",") if s.strip()]
            kind = type(current[0]) if current else int
            return tuple(kind(s.strip()) for s in items)
        if raw.lower() == "none":
            return None
        return raw
    except ValueError:
        kind = type(current).__name__
        raise GenbenchError(f"--set {key}={raw}: expected a {kind} like {current!r}") from None


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise GenbenchError(f"--set takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def resolve(
    config_cls: type,
    model_presets: Mapping[str, Mapping[str, Any]],
    preset: Preset,
    overrides: Mapping[str, str],
    epochs: int | None = None,
) -> tuple[Any, Preset]:
    """(model config, resolved preset) for a run; unknown keys list the valid ones."""
    fields = config_fields(config_cls)
    clash = set(fields) & set(PRESET_KEYS)
    if clash:
        raise TypeError(f"{config_cls.__name__} fields {sorted(clash)} shadow preset settings")
    model_values: dict[str, Any] = {}
    preset_values: dict[str, Any] = {}
    for key, value in model_presets.get(preset.name, {}).items():
        (model_values if key in fields else preset_values)[key] = value
    base = config_cls(**model_values)
    for key, raw in overrides.items():
        if key in fields:
            model_values[key] = parse_value(raw, getattr(base, key), key)
        elif key in PRESET_KEYS:
            current = getattr(preset, key)
            preset_values[key] = parse_value(raw, current, key)
        else:
            valid = ", ".join(sorted(fields) + sorted(PRESET_KEYS))
            raise UnknownName(f"unknown --set key {key!r}; valid keys: {valid}")
    if epochs is not None:
        preset_values["epochs"] = epochs
    return config_cls(**model_values), preset.with_overrides(**preset_values)


def config_from_dict(config_cls: type, values: Mapping[str, Any]) -> Any:
    """Rebuild a Config from JSON (lists back to tuples), ignoring unknown keys."""
    hints = typing.get_type_hints(config_cls)
    kwargs = {}
    for name in config_fields(config_cls):
        if name in values:
            v = values[name]
            if isinstance(v, list) and "tuple" in str(hints.get(name, "")):
                v = tuple(v)
            kwargs[name] = v
    return config_cls(**kwargs)
