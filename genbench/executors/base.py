"""What every executor shares: its options, the :class:`Executor` protocol, and what a worker
started elsewhere is handed (the driver's settings, its plugin folders, a portable RunSpec).

Each executor declares its own frozen options (:class:`LocalOptions`, :class:`RayOptions`,
:class:`SlurmOptions`); a field's command-line flag and range are declared on the field, so
the one-line errors ("--cpus-per-run 0: must be at least 1", "--address needs --executor
ray") are read off the declarations rather than written once per flag. The backends import
this module, never the package, so ``genbench.executors`` has no import cycle.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

from genbench.errors import GenbenchError
from genbench.ranges import nonnegative, positive, range_problem

Options = TypeVar("Options", bound="RunOptions")
Sharder = Callable[[Callable[..., Any], list[dict[str, Any]]], list[Any]]  # (fn, jobs) -> results


def flag(f: dataclasses.Field) -> str:
    """The command-line flag of an options field (declared, else its name with dashes)."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def needs(default: Any, hint: str = "", flag: str | None = None) -> Any:
    """An executor's own field: ``default`` (or a declared field such as ``positive(1)``);
    ``hint`` follows "--FLAG needs --executor NAME" when the flag is given to another executor."""
    declared = default if isinstance(default, dataclasses.Field) else field(default=default)
    return field(default=declared.default, metadata={**declared.metadata, "hint": hint,
                                                     **({"flag": flag} if flag else {})})


@dataclass(frozen=True)
class RunOptions:
    """What every executor takes (the ``genbench run``/``eval`` options of the same names)."""

    name: ClassVar[str] = ""
    cpus_per_run: int = positive(1)  # CPUs each run asks for; torch uses as many threads
    gpus_per_run: float | None = nonnegative(None)  # None: 1 where the cluster has GPUs, else 0
    plugins: tuple[str, ...] = ()  # extra plugin folders the workers load too
    live: bool = True  # show the sweep table (rich when a terminal, lines otherwise)
    extra_env: Mapping[str, str] = field(default_factory=dict)

    def replace(self: Options, **changes: Any) -> Options:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class LocalOptions(RunOptions):
    """``--executor local``: the runs one after another in this process."""

    name: ClassVar[str] = "local"


@dataclass(frozen=True)
class RayOptions(RunOptions):
    """``--executor ray``: each run one Ray task, its evaluation optionally in shards."""

    name: ClassVar[str] = "ray"
    address: str | None = needs(None)  # "auto", "host:port" or "ray://host:port"; None: local Ray
    max_retries: int = needs(nonnegative(2))  # a run whose worker died is retried
    eval_shards: int = needs(positive(1), "(the shards are Ray tasks)")  # IWAE, AIS, BDMC


@dataclass(frozen=True)
class SlurmOptions(RunOptions):
    """``--executor slurm``: the runs as one SLURM job array through submitit."""

    name: ClassVar[str] = "slurm"
    partition: str | None = needs(None, flag="--slurm-partition")
    time_limit: str = needs("12:00:00", flag="--slurm-time")
    cluster: str | None = needs(None, flag="--slurm-cluster")  # None: SLURM; "local": for testing
    folder: Path | None = needs(None, flag="--slurm-folder")  # submitit's logs; default <results>/_slurm
    parallel: int | None = needs(positive(None), flag="--slurm-parallel")  # array tasks at once (at most)
    dry_run: bool = needs(False, "(to see any sweep's runs and cost: --plan)")


class Executor(Protocol):
    """One way to execute planned runs. ``genbench.executors.EXECUTORS`` maps each name to
    one; a new executor is a module with a class like these and one line in that dict."""

    name: str
    options: type[RunOptions]

    def check(self, opts: Any) -> None:
        """Everything that can be checked without the engine (one line each), before any
        data is loaded or anything submitted."""

    def start(self, opts: Any) -> None:
        """Reach the engine before the driver loads data and plans (a bad address fails
        first, and workers warm up meanwhile)."""

    def run(self, plans: list, opts: Any, console: Any, results: Path) -> list:
        """Execute the plans; their RunOutcomes in plan order."""

    def sharder(self, opts: Any, run_dir: Path, device: str, data_dir: str | None) -> Sharder | None:
        """What splits one run's IWAE/AIS/BDMC over workers (``genbench eval``), or None."""


def check_fields(opts: RunOptions) -> None:
    """The declared ranges of ``opts``' fields: ``--cpus-per-run 0: must be at least 1 (a count)``."""
    for f in dataclasses.fields(opts):
        value = getattr(opts, f.name)
        problem = range_problem(f, value)
        if problem is not None:
            problem = problem.replace("must be at least 0", "cannot be negative")
            raise GenbenchError(f"{flag(f)} {value}: {problem}")


def build(cls: type[Options], given: Mapping[str, Any], others: list[type[RunOptions]]) -> Options:
    """``cls`` from the command line's values; a flag that belongs to another executor (given
    a value other than its default) is one line naming that executor."""
    own = {f.name for f in dataclasses.fields(cls)}
    for key, value in given.items():
        if key in own:
            continue
        for other in others:
            f = next((f for f in dataclasses.fields(other) if f.name == key), None)
            if f is not None and value != f.default:
                hint = f.metadata.get("hint", "")
                raise GenbenchError(f"{flag(f)} needs --executor {other.name}{' ' + hint if hint else ''}")
        if not any(key in {f.name for f in dataclasses.fields(o)} for o in others):
            raise TypeError(f"no executor takes an option {key!r}")
    return cls(**{k: v for k, v in given.items() if k in own})


def require_extra(executor: str, module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise GenbenchError(f"--executor {executor} needs {module}: pip install \"genbench[{extra}]\"")


def worker_env(opts: RunOptions) -> dict[str, str]:
    """The driver's GENBENCH_* settings (cache, data, offline, plugins), which a worker
    started elsewhere (or earlier) must see as the driver does."""
    env = {k: v for k, v in os.environ.items() if k.startswith("GENBENCH_")}
    return {**env, **opts.extra_env}


def worker_plugins(opts: RunOptions) -> tuple[str, ...]:
    """``--plugins`` folders as absolute paths (a worker may start in another folder)."""
    return tuple(str(Path(p).expanduser().resolve()) for p in opts.plugins)


def portable(spec: Any) -> Any:
    """The RunSpec a worker elsewhere can use: the results folder as an absolute path."""
    return dataclasses.replace(spec, results=Path(spec.results).resolve())
