"""Models, datasets and metrics by name: the only global state in genbench.

The registry is plain dicts behind validating ``register_*`` functions (after
torch-fidelity). Plugins register themselves on import; :mod:`genbench.plugins` decides
what gets imported.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from genbench.errors import UnknownName

T = TypeVar("T")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type
    description: str
    source: str  # module or file the plugin came from


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: Callable[..., Any]  # (request: DataRequest) -> DataBundle
    description: str


@dataclass(frozen=True)
class MetricEntry:
    """A metric adapter: ``fn(ctx: EvalContext) -> dict[str, float]``.

    ``needs`` are model capabilities (see :mod:`genbench.contract`); a model lacking one
    gets "n/a" with the reason instead of a number. ``produces`` maps each result key to a
    one-line description; ``higher_is_better`` tells the report which way to rank.
    """

    name: str
    fn: Callable[..., dict[str, float]]
    needs: frozenset[str]
    produces: Mapping[str, str]
    higher_is_better: Mapping[str, bool] = field(default_factory=dict)
    description: str = ""
    default: bool = True  # run by `genbench run` when the preset does not list metrics


MODELS: dict[str, ModelEntry] = {}
DATASETS: dict[str, DatasetEntry] = {}
METRICS: dict[str, MetricEntry] = {}


def _first_line(doc: str | None) -> str:
    return (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""


def _check_name(name: str, what: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"{what} name {name!r} must be letters, digits, '-' or '_'")


def register_model(name: str, *, description: str | None = None) -> Callable[[type[T]], type[T]]:
    """Class decorator: make ``cls`` available as ``genbench run NAME``.

    The class needs a ``Config`` dataclass and ``__init__(self, config, data_info)``.
    Registering a name twice from the same source replaces it (re-import); from another
    source it is an error, so two plugins cannot silently shadow each other.
    """

    def decorate(cls: type[T]) -> type[T]:
        _check_name(name, "model")
        if not hasattr(cls, "Config"):
            raise TypeError(f"model {name!r}: class {cls.__name__} needs a `Config` dataclass")
        source = getattr(cls, "__module__", "?")
        old = MODELS.get(name)
        if old is not None and old.cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"model {name!r} is registered twice ({old.source} and {source})")
        MODELS[name] = ModelEntry(name, cls, description or _first_line(cls.__doc__), source)
        cls.registered_name = name  # type: ignore[attr-defined]
        return cls

    return decorate


def register_dataset(name: str, *, description: str) -> Callable[[T], T]:
    def decorate(loader: T) -> T:
        _check_name(name, "dataset")
        DATASETS[name] = DatasetEntry(name, loader, description)  # type: ignore[arg-type]
        return loader

    return decorate


def register_metric(
    name: str,
    *,
    needs: set[str] | frozenset[str] = frozenset(),
    produces: Mapping[str, str],
    higher_is_better: Mapping[str, bool] | None = None,
    description: str = "",
    default: bool = True,
) -> Callable[[T], T]:
    def decorate(fn: T) -> T:
        _check_name(name, "metric")
        METRICS[name] = MetricEntry(
            name,
            fn,  # type: ignore[arg-type]
            frozenset(needs),
            dict(produces),
            dict(higher_is_better or {}),
            description or _first_line(getattr(fn, "__doc__", "")),
            default,
        )
        return fn

    return decorate


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of
    two neighbours each cost 1 (``fdi`` is 1 from ``fid``), case ignored."""
    a, b = a.lower(), b.lower()
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


def closest(name: str, choices: list[str] | Mapping[str, Any], what: str) -> UnknownName:
    """An error naming the closest registered entries (for typos on the command line): by
    edit distance (at most a third of the name, at least 1), difflib's ratio as a fallback."""
    names = sorted(set(choices))
    limit = max(1, len(name) // 3)
    scored = sorted((edit_distance(name, n), n) for n in names)
    near = [n for d, n in scored if d <= limit][:3]
    near = near or difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(near)}?" if near else f"known: {', '.join(names) or 'none'}"
    return UnknownName(f"unknown {what} {name!r}; {hint}")


def get_model(name: str) -> ModelEntry:
    if name not in MODELS:
        raise closest(name, MODELS, "model")
    return MODELS[name]


def get_dataset(name: str) -> DatasetEntry:
    if name not in DATASETS:
        raise closest(name, DATASETS, "dataset")
    return DATASETS[name]


def get_metric(name: str) -> MetricEntry:
    if name not in METRICS:
        # accept a produced key too (e.g. `test_iwae` for `iwae`)
        for entry in METRICS.values():
            if name in entry.produces:
                return entry
        keys = [k for e in METRICS.values() for k in e.produces if not k.endswith("_stderr")]
        raise closest(name, [*METRICS, *keys], "metric")
    return METRICS[name]
