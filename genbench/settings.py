"""Resolving a run's settings: preset < the model's per-preset overrides < --epochs/--set.

``--set KEY=VALUE`` keys live in one flat namespace: the model's ``Config`` fields and the
preset's fields (``batch_size``, ``iwae_k``, ...). Values are parsed by the field's type.

Every resolved value is range-checked before anything runs (:func:`check_settings`); a bad
one is one line naming where it came from (``--set latent_dim=0: ...``). A config dataclass
declares each field's range once, on the field (:mod:`genbench.ranges`, imported from here)::

    from genbench.settings import between, one_of, positive, probability

    @dataclass(frozen=True)
    class Config:
        latent_dim: int = positive(20)        # an int >= 1 (a float: > 0)
        hidden: tuple[int, ...] = positive((400,))  # each int >= 1
        dropout: float = probability(0.5)     # in [0, 1]
        temperature: float = between(1.0, 0.1, 10.0)
        activation: str = one_of("relu", ("relu", "tanh"))
        # also nonnegative(default), finite(default); by hand: metadata={"range": (lo, hi)}

Every float is finite, declared or not. The Preset's fields and every built-in model's
declare their ranges; an older plugin's undeclared field is still checked by the name rules
it was written against (counts such as ``latent_dim`` at least 1, ``lr`` above 0, dropouts
in [0, 1]).
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import Any

from genbench.errors import GenbenchError, UnknownName
from genbench.presets import PRESET_KEYS, Preset, check_model_preset_key
from genbench.ranges import (  # noqa: F401 - their public path
    between,
    check_settings,
    finite,
    nonnegative,
    one_of,
    positive,
    probability,
    range_problem,
)


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
    origin: dict[str, str] = {}
    for key, value in model_presets.get(preset.name, {}).items():
        check_model_preset_key(config_cls, preset.name, key, fields)  # training settings only
        (model_values if key in fields else preset_values)[key] = value
        origin[key] = f"{config_cls.__qualname__}'s {preset.name} preset {key}={value!r}"
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
        origin[key] = f"--set {key}={raw}"
    if epochs is not None:
        preset_values["epochs"] = epochs
        origin["epochs"] = f"--epochs {epochs}"
    config, resolved = config_cls(**model_values), preset.with_overrides(**preset_values)
    check_settings(config, origin, f"{config_cls.__qualname__} default ")
    check_settings(resolved, origin, f"preset {preset.name} ")
    return config, resolved


def split_overrides(config_classes: Mapping[str, type], overrides: Mapping[str, str]
                    ) -> tuple[dict[str, dict[str, str]], dict[str, list[str]]]:
    """Each model's share of ``--set`` for a run of several models: a key applies to the
    models that have it (preset keys to all); returns (model -> its overrides, key -> the
    models that ignore it). A key that no model has is an error listing the valid keys."""
    per_model: dict[str, dict[str, str]] = {name: {} for name in config_classes}
    ignored: dict[str, list[str]] = {}
    for key, raw in overrides.items():
        having = [n for n, cls in config_classes.items()
                  if key in PRESET_KEYS or key in config_fields(cls)]
        if not having:
            valid = sorted(set(PRESET_KEYS).union(*(config_fields(c) for c in config_classes.values())))
            raise UnknownName(f"unknown --set key {key!r}; valid keys: {', '.join(valid)}")
        for name in having:
            per_model[name][key] = raw
        if len(having) < len(config_classes):
            ignored[key] = [n for n in config_classes if n not in having]
    return per_model, ignored


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
