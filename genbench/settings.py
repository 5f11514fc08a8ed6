"""Resolving a run's settings: preset < the model's per-preset overrides < --epochs/--set.

``--set KEY=VALUE`` keys live in one flat namespace: the model's ``Config`` fields and the
preset's fields (``batch_size``, ``iwae_k``, ...). Values are parsed by the field's type.

Every resolved value is range-checked before anything runs (:func:`check_settings`); a bad
one is one line naming where it came from (``--set latent_dim=0: ...``). A config dataclass
declares a field's range once, with field metadata::

    from genbench.settings import positive, probability, between

    @dataclass(frozen=True)
    class Config:
        latent_dim: int = positive(20)        # an int >= 1 (a float: > 0)
        dropout: float = probability(0.5)     # in [0, 1]
        temperature: float = between(1.0, 0.1, 10.0)
        # or by hand: field(default=3, metadata={"range": (lo, hi)}), None = unbounded

Fields without a declaration get the default rules, so a plugin is checked for free:

- every float is finite (no nan, no inf);
- an int that counts something is >= 1: ``epochs``, ``batch_size``, ``hidden``, ``width``,
  ``channels``, ``layers``, ``steps``, ``head``, names starting ``n_``, ``num_``, ``max_``
  and names ending ``_dim``, ``_k``, ``_n``, ``_size``, ``_steps``, ``_chains``,
  ``_samples``, ``_subsets``, ``_epochs``, ``_chunk``, ``_leapfrog``, ``_pieces``,
  ``_batch``, ``_kernel``, ``_layers``, ``_width`` (``None`` stays allowed where the type
  allows it); the ints of a tuple named ``hidden`` or ``*_hidden`` too;
- a float named ``lr``, ``*_lr``, ``lr_*`` or ``*_tol`` is > 0;
- a float named ``*dropout*``, ``beta1``, ``beta2``, ``momentum`` or ``*_prob`` is in [0, 1].

A name from a fixed list is declared with ``one_of(default, choices)``.

The preset's settings (``Preset``) follow the same rules.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any

from genbench.errors import GenbenchError, UnknownName
from genbench.presets import PRESET_KEYS, Preset, check_model_preset_key


# -- ranges -----------------------------------------------------------------------------
def between(default: Any, lo: float | None, hi: float | None, **kwargs: Any) -> Any:
    """A dataclass field with ``default`` whose values must lie in [lo, hi] (None: open)."""
    return dataclasses.field(default=default, metadata={"range": (lo, hi)}, **kwargs)


def positive(default: Any, **kwargs: Any) -> Any:
    """A count (int >= 1) or a positive float (> 0)."""
    return dataclasses.field(default=default, metadata={"range": (0, None), "above": True},
                             **kwargs)


def nonnegative(default: Any, **kwargs: Any) -> Any:
    return between(default, 0, None, **kwargs)


def probability(default: Any, **kwargs: Any) -> Any:
    return between(default, 0.0, 1.0, **kwargs)


def one_of(default: str, choices: tuple[str, ...], **kwargs: Any) -> Any:
    """A field whose value must be one of ``choices`` (a name from a fixed list)."""
    return dataclasses.field(default=default, metadata={"choices": tuple(choices)}, **kwargs)


def finite(default: Any, **kwargs: Any) -> Any:
    """Any finite number (the default rule for floats, spelled out)."""
    return between(default, None, None, **kwargs)


_COUNT_NAMES = {"epochs", "batch_size", "hidden", "width", "channels", "layers", "steps", "head"}
_COUNT_PREFIXES = ("n_", "num_", "max_")
_COUNT_SUFFIXES = ("_dim", "_k", "_n", "_size", "_steps", "_chains", "_samples", "_subsets",
                   "_epochs", "_chunk", "_leapfrog", "_pieces", "_batch", "_kernel", "_layers",
                   "_width")


def _default_rule(name: str, value: Any) -> tuple[float | None, float | None, bool] | None:
    """(lo, hi, lo excluded) for a field without a declared range, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if (name in _COUNT_NAMES or name.startswith(_COUNT_PREFIXES)
                or name.endswith(_COUNT_SUFFIXES)):
            return (1, None, False)
        return None
    if isinstance(value, float):
        if name == "lr" or name.endswith(("_lr", "_tol")) or name.startswith("lr_"):
            return (0.0, None, True)
        if "dropout" in name or name in ("beta1", "beta2", "momentum") or name.endswith("_prob"):
            return (0.0, 1.0, False)
        return (None, None, False)
    return None


def _rule(f: dataclasses.Field, value: Any) -> tuple[float | None, float | None, bool] | None:
    if "range" in f.metadata:
        lo, hi = f.metadata["range"]
        above = bool(f.metadata.get("above"))
        if above and isinstance(value, int) and not isinstance(value, bool) and lo is not None:
            return (lo + 1, hi, False)  # an int above 0 is at least 1
        return (lo, hi, above)
    return _default_rule(f.name, value)


def range_problem(f: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is out of ``f``'s range (a phrase), or None when it is fine."""
    if value is None:
        return None
    choices = f.metadata.get("choices")
    if choices is not None and isinstance(value, str) and value not in choices:
        return f"must be one of {', '.join(choices)}"
    values = value if isinstance(value, tuple) else (value,)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        rule = _rule(f, v)
        if rule is None and isinstance(value, tuple) and (
                f.name == "hidden" or f.name.endswith("_hidden")) and isinstance(v, int):
            rule = (1, None, False)
        if rule is None:
            continue
        lo, hi, above = rule
        if isinstance(v, float) and not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and (v <= lo if above else v < lo):
            if above:
                return f"must be above {lo}"
            return "must be at least 1 (a count)" if lo == 1 and isinstance(v, int) else \
                f"must be at least {lo}"
        if hi is not None and v > hi:
            return f"must be in [{lo}, {hi}]" if lo is not None else f"must be at most {hi}"
    return None


def check_settings(obj: Any, origin: Mapping[str, str] | None = None,
                   default_origin: str = "") -> None:
    """Range-check every field of the dataclass ``obj``; GenbenchError naming the first bad
    one and where it came from (``origin``: field -> e.g. "--set latent_dim=0")."""
    origin = origin or {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem = range_problem(f, value)
        if problem is not None:
            where = origin.get(f.name) or f"{default_origin}{f.name}={value!r}"
            raise GenbenchError(f"{where}: {f.name} {problem}")


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
