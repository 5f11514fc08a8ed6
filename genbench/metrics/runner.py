"""Run registered metrics on a model, turning a missing capability into "n/a: reason"."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from genbench.contract import capabilities, has_density_encoder, missing_reason
from genbench.errors import GenbenchError
from genbench.metrics.context import NOT_APPLICABLE, EvalContext, EvalProgress, MetricResult
from genbench.registry import METRICS, MetricEntry, get_metric


def model_capabilities(model: torch.nn.Module) -> frozenset[str]:
    have = set(capabilities(model))
    if has_density_encoder(model):
        have.add("density_encoder")
    return frozenset(have)


def requested_metrics(names: Iterable[str] = ()) -> list[MetricEntry]:
    """The requested metrics (default: all default ones), each once, in registration order
    except that a metric runs after those it declares ``after`` (when they are requested).

    Whether one applies to a model is decided by :func:`evaluate_metrics` (n/a with a reason).
    A metric declared ``after`` but not requested is not added: the later one then does
    without its result (BDMC falls back to the preset's schedule).
    """
    entries = [get_metric(n) for n in names] if names else [
        m for m in METRICS.values() if m.default]
    seen: dict[str, MetricEntry] = {}
    for e in entries:
        seen.setdefault(e.name, e)
    ordered: dict[str, MetricEntry] = {}

    def place(entry: MetricEntry, path: tuple[str, ...]) -> None:
        if entry.name in ordered:
            return
        if entry.name in path:
            raise GenbenchError(f"metrics {' -> '.join((*path, entry.name))} wait for each other "
                                "in a cycle: fix their `after` declarations")
        for dep in entry.after:
            if dep in seen:
                place(seen[dep], (*path, entry.name))
        ordered[entry.name] = entry

    for e in seen.values():
        place(e, ())
    return list(ordered.values())


def evaluate_metrics(
    ctx: EvalContext,
    names: Iterable[str] = (),
    progress: EvalProgress | Callable[[str], None] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Evaluate metrics; returns (values, not_applicable: result key -> reason).

    ``progress`` is told when each metric starts and ends and, through ``ctx.progress``,
    how far its long loops are (an :class:`EvalProgress`; a plain callable is told the
    name of each metric as it starts).

    A metric sees the results of the metrics before it in ``ctx.upstream`` (a metric may
    return a :class:`MetricResult` to hand a typed detail to those declared ``after`` it).
    A metric that raises :class:`GenbenchError` is recorded as n/a with its message, so one
    missing extractor does not cost the other numbers. Any other exception (a plugin whose
    images leave [0, 1], a bug) costs that metric only: n/a with the exception's one-line
    summary, its traceback appended to ``run_dir/error.log``; every other metric is kept.
    """
    have = model_capabilities(ctx.model)
    values: dict[str, float] = {}
    na: dict[str, str] = {}
    watch = _watcher(progress)
    names = tuple(names)
    for entry in requested_metrics(names):
        reason = missing_reason(entry.needs, have)
        if reason is not None:
            na.update({key: reason for key in entry.produces})
            if names:  # asked for by name: the display says why it is not measured
                watch.end(entry.name, 0.0, reason)
            continue
        ctx.watch, ctx.metric = watch, entry.name
        watch.start(entry.name)
        start = time.perf_counter()
        try:
            out = entry.fn(ctx)  # adapters manage grad themselves (HMC needs it)
        except GenbenchError as err:
            na.update({key: str(err) for key in entry.produces})
            watch.end(entry.name, time.perf_counter() - start, str(err))
            continue
        except Exception as err:  # noqa: BLE001  (a metric's bug costs that metric only)
            why = metric_failed(ctx, entry.name, err)
            na.update({key: why for key in entry.produces})
            watch.end(entry.name, time.perf_counter() - start, why)
            continue
        watch.end(entry.name, time.perf_counter() - start)
        result = out if isinstance(out, MetricResult) else MetricResult(out)
        ctx.upstream[entry.name] = result
        out = result.values
        na.update(out.pop(NOT_APPLICABLE, None) or {})  # keys it could not measure, and why
        ctx.results.update(out)
        values.update(out)
        values[f"_seconds_{entry.name}"] = round(time.perf_counter() - start, 3)
    return values, na


def metric_failed(ctx: EvalContext, name: str, err: Exception) -> str:
    """The n/a reason for a metric that raised ``err``; the traceback goes to error.log."""
    import datetime
    import traceback

    summary = (str(err).strip().splitlines() or [""])[0][:200]
    reason = f"failed: {type(err).__name__}: {summary}".rstrip(": ")
    if ctx.run_dir is not None:
        log = Path(ctx.run_dir) / "error.log"
        try:
            with open(log, "a") as f:
                f.write(f"--- metric {name} failed at "
                        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M:%S} UTC\n")
                f.write("".join(traceback.format_exception(err)))
            reason += f" (traceback in {log})"
        except OSError:
            pass
    return reason


class _NameOnly(EvalProgress):
    def __init__(self, fn: Callable[[str], None]) -> None:
        self.fn = fn

    def start(self, metric: str) -> None:
        self.fn(metric)


def _watcher(progress: EvalProgress | Callable[[str], None] | None) -> EvalProgress:
    if progress is None:
        return EvalProgress()
    return progress if isinstance(progress, EvalProgress) else _NameOnly(progress)
