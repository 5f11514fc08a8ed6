"""Models, datasets and metrics by name: the only global state in genbench.

The registry is plain dicts behind validating ``register_*`` functions (after
torch-fidelity). Plugins register themselves on import; :mod:`genbench.plugins` decides
what gets imported.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

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


Direction = Literal["higher", "lower", "unranked"]
SHARED_SECTION = "Likelihood, shared family"


@dataclass(frozen=True)
class ResultKey:
    """One number a metric writes into ``metrics.json``, declared once beside that metric.

    Everything that shows the number reads this: the report (its section, label, direction,
    bold, glossary), the closing table of ``genbench run`` and its flags, TensorBoard's
    headline, the API's ``higher_is_better``, ``genbench list``. The declarations are written
    into each run folder beside the results, so the report labels a plugin's metric without
    importing the plugin.
    """

    name: str  # the key in metrics.json; with ``prefix``, the start of a family (edit_slope_<attr>)
    label: str = ""  # table header ("IWAE"); "{a}" is the attribute of a prefix family
    text: str = ""  # one line: what the number is, and its unit (``genbench list``)
    caveat: str = ""  # the report's glossary: how to read it, and what it does not say
    direction: Direction = "unranked"  # which way is better; unranked: never bold, never "best"
    unit: str = ""  # "nats/image", "bits/dim", "fraction", "count", ...
    section: str = ""  # the report section it sits in (a title of report.glossary.SECTIONS)
    stderr: bool = False  # companion <name>_stderr: its standard error
    bpd: bool = False  # companion <name>_bpd: the log-likelihood in bits/dim (lower is better)
    converged: str = ""  # companion flag key, 0 when this estimate did not converge
    headline: int = 0  # > 0: a headline number (closing table, TensorBoard); 1 is kept first
    prefix: bool = False  # ``name`` is a prefix: every <name><attribute> key is one of these
    estimates: str = ""  # the quantity it estimates or bounds, e.g. "log p(x)" (NLL, bits/dim)
    variant_of: str = ""  # the own-observation key this shared-family key is a variant of
    # what the number is to ``estimates``: "exact", "estimate" (AIS: consistent, a stochastic
    # lower bound), "bound" (ELBO, IWAE), "legacy" (Parzen: neither, and it can rank wrongly)
    kind: str = ""
    stands_for: int = 0  # > 0: may stand for its model's log p(x) (quality plane, headline); lowest wins
    paired: int = 0  # > 0: per-image values in per_image.json; the paired plot shows the lowest two have
    best_text: str = ""  # the headline sentence's name for it ("IWAE bound (own p(x|z))"); "": no sentence
    flag: bool = False  # a 0/1 record: counted over seeds ("1 of 2"), never averaged
    certified: str = ""  # companion flag key, 1 when BDMC certified this estimate
    # the p(x|z) it is measured under: "own" (always the model's), "model" (the one its metric was
    # given: own, or the shared family in a run from before the shared keys), "shared", or
    # "parzen window" (its width recorded as <name>_sigma); "": it does not depend on one
    observation: str = ""

    @property
    def higher_is_better(self) -> bool | None:
        return {"higher": True, "lower": False}.get(self.direction)

    @property
    def family(self) -> str:
        """How the report marks an estimate of log p(x) among the others: "exact", "legacy"
        (Parzen), "shared" (the shared observation family) or "own" (the model's p(x|z))."""
        if self.kind in ("exact", "legacy"):
            return self.kind
        return "shared" if self.variant_of else "own"

    @property
    def companions(self) -> tuple[str, ...]:
        """The keys reported beside this one."""
        return tuple(k for k, on in ((f"{self.name}_stderr", self.stderr), (f"{self.name}_bpd", self.bpd),
                                     (self.converged, bool(self.converged)),
                                     (self.certified, bool(self.certified))) if on)

    def trust(self, values: Mapping[str, Any]) -> str | None:
        """How far one run's ``values`` (its metrics.json) vouch for this estimate: "certified"
        (BDMC's gap within tolerance: ``certified`` is 1), "converged" (the doubling runs
        agreed, with no certificate), "not converged", or None where this key has neither flag
        or the run recorded none. Only "certified" is ranked; the closing table of ``genbench
        run`` and the report both read this one rule.
        """
        def flag(key: str) -> float | None:
            v = values.get(key) if key else None
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v
            return float(v) if ok else None

        cert, conv = flag(self.certified), flag(self.converged)
        if cert is None and conv is None:
            return None
        if cert == 1:
            return "certified"
        return "converged" if conv == 1 else "not converged"

    def bpd_key(self) -> ResultKey:
        """The bits/dim companion as a key of its own (lower is better)."""
        return ResultKey(f"{self.name}_bpd", f"{self.label or self.name} (bits/dim)",
                         f"{self.name} in bits/dim: -log p(x) / (D ln 2), plus 8 on continuous data",
                         direction="lower", unit="bits/dim", observation=self.observation)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default or f.name == "name"}

    @classmethod
    def from_json(cls, data: Any) -> ResultKey | None:
        """A declaration read back from a run folder, or None if it is not one (input: checked)."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            return None
        kinds = {f.name: type(f.default) for f in dataclasses.fields(cls) if f.name != "name"}
        values = {k: v for k, v in data.items() if k in kinds and isinstance(v, kinds[k])}
        if values.get("direction", "unranked") not in ("higher", "lower", "unranked"):
            values.pop("direction")
        return cls(data["name"], **values)


def own_and_shared(key: ResultKey, shared_caveat: str = "", shared_text: str = "",
                   shared_headline: int = 0, shared_section: str = SHARED_SECTION,
                   shared_stands_for: int = 0, shared_paired: int = 0,
                   shared_best_text: str = "") -> tuple[ResultKey, ResultKey]:
    """A likelihood key under the model's own p(x|z) and its variant under the shared
    observation family of Wu et al. (2017): ``<name>_shared`` (``ais_minus_iwae`` ->
    ``ais_minus_iwae_shared``), labelled "(shared)", in the shared-family section (or
    ``shared_section``: a diagnostic's), with its own convergence and certification flags.
    Where the variant ranks among a model's estimates (``stands_for``, ``paired``) and its
    headline sentence are its own, never the own key's."""
    label = key.label.replace("(", "(shared, ", 1) if "(" in key.label else f"{key.label} (shared)"
    shared = dataclasses.replace(
        key, name=f"{key.name}_shared", label=label, section=shared_section, variant_of=key.name,
        text=shared_text or key.text, caveat=shared_caveat or key.caveat, headline=shared_headline,
        converged=f"{key.converged}_shared" if key.converged else "",
        certified=f"{key.certified}_shared" if key.certified else "",
        observation="shared" if key.observation else "", stands_for=shared_stands_for,
        paired=shared_paired, best_text=shared_best_text)
    return key, shared


@dataclass(frozen=True)
class MetricEntry:
    """A metric adapter: ``fn(ctx: EvalContext) -> dict[str, float]``.

    ``needs`` are model capabilities (see :mod:`genbench.contract`); a model lacking one
    gets "n/a" with the reason instead of a number. ``keys`` declare the numbers it writes
    (:class:`ResultKey`); ``produces`` (key -> one line) and ``higher_is_better`` are read
    off them, for the runner and for older callers.
    ``after`` names metrics that, when they run in the same evaluation, run first and hand
    their result to this one (``EvalContext.upstream``): BDMC reads the AIS it certifies.
    """

    name: str
    fn: Callable[..., Any]  # dict[str, float], or a metrics.context.MetricResult
    needs: frozenset[str]
    produces: Mapping[str, str]
    higher_is_better: Mapping[str, bool] = field(default_factory=dict)
    description: str = ""
    default: bool = True  # run by `genbench run` when the preset does not list metrics
    keys: tuple[ResultKey, ...] = ()
    after: tuple[str, ...] = ()  # metrics whose results this one reads, when they run


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
    keys: Sequence[ResultKey] = (),
    produces: Mapping[str, str] | None = None,
    higher_is_better: Mapping[str, bool] | None = None,
    description: str = "",
    default: bool = True,
    after: tuple[str, ...] = (),
) -> Callable[[T], T]:
    """Function decorator: make ``fn(ctx) -> {key: value}`` the metric ``name``.

    ``keys`` declare the numbers it writes (:class:`ResultKey`: label, direction, section,
    companions). The older spelling, ``produces={key: one line}`` with
    ``higher_is_better={key: bool}``, still works: each such key becomes a plain ResultKey
    (shown in the report's "Other metrics", labelled by its name).
    """
    declared = _declarations(keys, produces or {}, higher_is_better or {})

    def decorate(fn: T) -> T:
        _check_name(name, "metric")
        made = {k.name: k.text for k in declared if not k.prefix}  # a family's keys come in produces
        made.update({c.name: c.text for k in declared if k.bpd for c in [k.bpd_key()]})
        METRICS[name] = MetricEntry(
            name,
            fn,  # type: ignore[arg-type]
            frozenset(needs),
            {**made, **(produces or {})},
            {k.name: k.higher_is_better for k in _with_bpd(declared) if k.higher_is_better is not None},
            description or _first_line(getattr(fn, "__doc__", "")),
            default,
            tuple(declared),
            tuple(after),
        )
        return fn

    return decorate


def _declarations(keys: Sequence[ResultKey], produces: Mapping[str, str],
                  higher: Mapping[str, bool]) -> list[ResultKey]:
    """``keys``, then a plain ResultKey for each older-style key they do not cover."""
    for k in keys:
        if not isinstance(k, ResultKey):
            raise TypeError(f"register_metric(keys=...) takes ResultKeys, got {k!r}")
    out = [dataclasses.replace(k, text=produces[k.name]) if not k.text and k.name in produces else k
           for k in keys]
    covered = {k.name for k in out} | {c for k in out if k.bpd for c in (f"{k.name}_bpd",)}
    prefixes = tuple(k.name for k in out if k.prefix)
    for key in dict.fromkeys([*produces, *higher]):
        if key in covered or (prefixes and key.startswith(prefixes)):
            continue
        direction = {True: "higher", False: "lower"}.get(higher.get(key), "unranked")  # type: ignore[arg-type]
        out.append(ResultKey(key, text=produces.get(key, ""), direction=direction))  # type: ignore[arg-type]
    return out


def _with_bpd(keys: Iterable[ResultKey]) -> list[ResultKey]:
    return [x for k in keys for x in ((k, k.bpd_key()) if k.bpd else (k,))]


# -- result keys: what every layer that shows a number reads -------------------------------
_REMEMBERED: dict[str, ResultKey] = {}  # declarations read from run folders (plugins not loaded)


def remember(declarations: Iterable[Any]) -> None:
    """Declarations read back from a run folder (JSON); bad entries are ignored."""
    for data in declarations:
        key = ResultKey.from_json(data)
        if key is not None:
            _REMEMBERED.setdefault(key.name, key)


def declared_keys() -> dict[str, ResultKey]:
    """Every declared result key by name: the loaded metrics' (bits/dim companions
    included), then those remembered from run folders."""
    out: dict[str, ResultKey] = {}
    for entry in METRICS.values():
        for key in _with_bpd(entry.keys):
            out.setdefault(key.name, key)
    for name, key in _REMEMBERED.items():
        out.setdefault(name, key)
    return out


def result_key(name: str) -> ResultKey | None:
    """The declaration of ``name`` (a prefix family's for edit_slope_<attr>), or None."""
    known = declared_keys()
    if name in known and not known[name].prefix:
        return known[name]
    family = [k for k in known.values() if k.prefix and name.startswith(k.name) and len(name) > len(k.name)]
    return max(family, key=lambda k: len(k.name)) if family else known.get(name)


def declarations_for(names: Iterable[str]) -> list[dict[str, Any]]:
    """The declarations of the keys ``names`` (a run's results), as JSON for its folder."""
    found = {}
    for name in names:
        key = result_key(name)
        if key is not None:
            found[key.name] = key.to_json()
    return list(found.values())


def headline_keys() -> list[ResultKey]:
    """The headline numbers (the closing table of ``genbench run``, TensorBoard's headline),
    in the order they are declared."""
    return [k for k in declared_keys().values() if k.headline > 0]


def log_likelihood_keys(shared: bool = True) -> list[str]:
    """Keys that estimate or bound log p(x) in nats/image (so NLL and bits/dim apply);
    ``shared=False`` leaves out the shared-family variants."""
    return [k.name for k in declared_keys().values()
            if k.estimates == "log p(x)" and (shared or not k.variant_of)]


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
