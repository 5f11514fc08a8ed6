"""A setting's range, declared on its dataclass field, and the check that reads it.

A Config (or the Preset, or an executor's options) says once, beside each field, what values
it takes::

    from genbench.settings import between, one_of, positive, probability

    @dataclass(frozen=True)
    class Config:
        latent_dim: int = positive(20)        # an int >= 1 (a float: > 0)
        hidden: tuple[int, ...] = positive((400,))  # each int >= 1
        dropout: float = probability(0.5)     # in [0, 1]
        temperature: float = between(1.0, 0.1, 10.0)
        activation: str = one_of("relu", ("relu", "tanh"))

and :func:`check_settings` turns a bad value into one line naming the field and the rule
("latent_dim must be at least 1 (a count)"). Every float must be finite whether declared or
not. This module is a leaf (the Preset and the model kit import it); its public path is
:mod:`genbench.settings`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from genbench.errors import GenbenchError

Rule = tuple[float | None, float | None, bool]  # (lo, hi, lo excluded)


def between(default: Any, lo: float | None, hi: float | None, *,
            metadata: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """A dataclass field with ``default`` whose values must lie in [lo, hi] (None: open)."""
    return dataclasses.field(default=default, metadata={**(metadata or {}), "range": (lo, hi)}, **kwargs)


def positive(default: Any, *, metadata: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
    """A count (int >= 1; each int of a tuple) or a positive float (> 0)."""
    return between(default, 0, None, metadata={**(metadata or {}), "above": True}, **kwargs)


def nonnegative(default: Any, **kwargs: Any) -> Any:
    return between(default, 0, None, **kwargs)


def probability(default: Any, **kwargs: Any) -> Any:
    return between(default, 0.0, 1.0, **kwargs)


def finite(default: Any, **kwargs: Any) -> Any:
    """Any number (finite, if a float): a field that has no narrower range, said so."""
    return between(default, None, None, **kwargs)


def one_of(default: str, choices: tuple[str, ...] | Any, *, metadata: Mapping[str, Any] | None = None,
           **kwargs: Any) -> Any:
    """A field whose value must be one of ``choices`` (a name from a fixed list)."""
    return dataclasses.field(default=default, metadata={**(metadata or {}), "choices": tuple(choices)},
                             **kwargs)


def declared(f: dataclasses.Field) -> bool:
    """Whether ``f`` declares what values it takes (a range or choices)."""
    return "range" in f.metadata or "choices" in f.metadata


def rule(f: dataclasses.Field, value: Any) -> Rule | None:
    """(lo, hi, lo excluded) for one number of field ``f``, or None (no bound)."""
    if "range" in f.metadata:
        lo, hi = f.metadata["range"]
        above = bool(f.metadata.get("above"))
        if above and isinstance(value, int) and lo is not None:
            return (lo + 1, hi, False)  # an int above 0 is at least 1
        return (lo, hi, above)
    return _legacy_rule(f.name, value)


# -- an older plugin's undeclared fields ----------------------------------------------------
# Before ranges were declared, they were guessed from field names; a plugin written then is
# still checked so (every built-in field declares its range: tests/test_faults.py).
_COUNT_NAMES = {"epochs", "batch_size", "hidden", "width", "channels", "layers", "steps", "head"}
_COUNT_PREFIXES = ("n_", "num_", "max_")
_COUNT_SUFFIXES = ("_dim", "_k", "_n", "_size", "_steps", "_chains", "_samples", "_subsets",
                   "_epochs", "_chunk", "_leapfrog", "_pieces", "_batch", "_kernel", "_layers",
                   "_width", "_hidden")


def _legacy_rule(name: str, value: Any) -> Rule | None:
    if isinstance(value, int):
        counts = name in _COUNT_NAMES or name.startswith(_COUNT_PREFIXES) or name.endswith(_COUNT_SUFFIXES)
        return (1, None, False) if counts else None
    if name == "lr" or name.endswith(("_lr", "_tol")) or name.startswith("lr_"):
        return (0.0, None, True)
    if "dropout" in name or name in ("beta1", "beta2", "momentum") or name.endswith("_prob"):
        return (0.0, 1.0, False)
    return None


def _outside(v: float, lo: float | None, hi: float | None, above: bool) -> str | None:
    if isinstance(v, float) and not math.isfinite(v):
        return "must be a finite number"
    if lo is not None and (v <= lo if above else v < lo):
        if above:
            return f"must be above {lo}"
        return "must be at least 1 (a count)" if lo == 1 and isinstance(v, int) else f"must be at least {lo}"
    if hi is not None and v > hi:
        return f"must be in [{lo}, {hi}]" if lo is not None else f"must be at most {hi}"
    return None


def range_problem(f: dataclasses.Field, value: Any) -> str | None:
    """Why ``value`` is out of ``f``'s declared range (a phrase), or None when it is fine."""
    if value is None:
        return None
    choices = f.metadata.get("choices")
    if choices is not None and isinstance(value, str) and value not in choices:
        return f"must be one of {', '.join(choices)}"
    for v in value if isinstance(value, tuple) else (value,):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        bounds = rule(f, v) or (None, None, False)
        problem = _outside(v, *bounds)
        if problem is not None:
            return problem
    return None


def check_settings(obj: Any, origin: Mapping[str, str] | None = None, default_origin: str = "") -> None:
    """Range-check every field of the dataclass ``obj``; GenbenchError naming the first bad
    one and where it came from (``origin``: field -> e.g. "--set latent_dim=0")."""
    origin = origin or {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        problem = range_problem(f, value)
        if problem is not None:
            where = origin.get(f.name) or f"{default_origin}{f.name}={value!r}"
            raise GenbenchError(f"{where}: {f.name} {problem}")
