"""Evaluate a model (after training) or a finished run folder (``genbench eval``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from genbench import store
from genbench.data import DataBundle
from genbench.errors import GenbenchError
from genbench.kit.nn import fuse_batchnorm
from genbench.loading import LoadedRun, load_run, refuse_outside, rescore_hint  # noqa: F401  (LoadedRun: re-exported)
from genbench.metrics import EvalContext, evaluate_metrics
from genbench.metrics.classification import LABELLED_FILE, labelled_subset
from genbench.metrics.context import EvalProgress
from genbench.metrics.features import default_cache_dir
from genbench.presets import Preset, get_preset
from genbench.registry import declarations_for


def evaluate_model(
    model: torch.nn.Module,
    data: DataBundle,
    preset: Preset,
    *,
    seed: int,
    device: torch.device,
    names: Iterable[str] = (),
    run_dir: Path | None = None,
    results_root: Path | None = None,
    progress: EvalProgress | Callable[[str], None] | None = None,
) -> tuple[dict[str, float], dict[str, str]]:
    """Every requested (or default) metric that applies; (values, not_applicable)."""
    model.eval()
    names = tuple(names) or preset.metrics
    # BatchNorm folded into its layer: the same function, one pass fewer each way in HMC
    ctx = EvalContext(model=fuse_batchnorm(model), data=data, preset=preset, seed=seed, device=device,
                      cache_dir=default_cache_dir(), results_root=results_root, run_dir=run_dir)
    result = evaluate_metrics(ctx, names, progress)
    if run_dir is not None and (record := labelled_subset(model)) is not None:
        store.write_json(Path(run_dir) / LABELLED_FILE, record)  # metrics never write files
    if run_dir is not None:  # what each number is, beside it: the report needs no plugin
        store.update_result_keys(Path(run_dir), declarations_for(result[0]))
    return result


@contextmanager
def sharded(sharder: Any) -> Iterator[None]:
    """Within the block, IWAE, AIS and BDMC split their test images over ``sharder``'s
    workers (:mod:`genbench.metrics.shards`; the Ray sharder is in ``genbench.executors``)
    and merge to exactly the unsharded numbers."""
    from genbench.metrics import shards

    token = shards.install(sharder)
    try:
        yield
    finally:
        shards.uninstall(token)


def evaluate_run(run_dir: Path, names: Iterable[str] = (), preset: str | None = None,
                 device: str = "cpu", data_dir: str | None = None,
                 progress: EvalProgress | Callable[[str], None] | None = None,
                 allow_unfinished: bool = False) -> dict[str, Any]:
    """Add metrics to a finished run's metrics.json without retraining.

    Refuses a run that is not finished (``allow_unfinished`` scores its last checkpoint
    anyway) and holds the run's lock while it evaluates and writes, so it never writes into
    a folder another process holds.
    """
    run_dir = check_run_folder(run_dir)  # before the lock creates anything
    with store.locked(run_dir):
        return _evaluate_run(Path(run_dir), names, preset, device, data_dir, progress,
                             allow_unfinished)


def check_run_folder(run_dir: Path) -> Path:
    """``run_dir`` as a Path if it holds a run (config.json), else one-line GenbenchError."""
    run_dir = Path(run_dir)
    if not (run_dir / store.CONFIG).is_file():
        raise GenbenchError(f"{run_dir} is not a run folder (no config.json); pass "
                            "results/<dataset>/<model>/<run-id>")
    config = store.read_config(run_dir)  # its schema, before anything is locked or loaded
    refuse_outside(run_dir, config, "evaluate", rescore_hint(config))
    store.read_metrics(run_dir)
    return run_dir


def _evaluate_run(run_dir: Path, names: Iterable[str], preset: str | None, device: str,
                  data_dir: str | None, progress: EvalProgress | Callable[[str], None] | None,
                  allow_unfinished: bool) -> dict[str, Any]:
    status = store.read_metrics(run_dir).get("status")
    if status != "finished" and not allow_unfinished:
        raise GenbenchError(f"{run_dir} is not finished (status: {status or 'none'}); finish it "
                            "with the same `genbench run` command, or pass --allow-unfinished "
                            "to score its last checkpoint")
    run = load_run(run_dir, device, data_dir)
    current = store.read_json(run_dir / store.METRICS)
    budget = current.get("eval_preset") or run.preset.name  # the budget of the row's numbers
    wanted = preset or budget  # without --preset, new metrics join the row at its budget
    eval_preset = run.preset
    if wanted != run.preset.name:
        p = get_preset(wanted)  # evaluation settings from another preset; training stays
        eval_preset = p.with_overrides(epochs=run.preset.epochs, batch_size=run.preset.batch_size,
                                       max_train=run.preset.max_train)
    if wanted != budget:  # one budget per row: every metric the row holds is measured again
        names = row_metrics(current, names, run.preset.metrics)
    values, na = evaluate_model(run.model, run.data, eval_preset, seed=run.seed,
                                device=torch.device(device), names=names, run_dir=Path(run_dir),
                                results_root=store.results_root(run_dir, run.config),
                                progress=progress)
    extra = {"eval_preset": eval_preset.name} if eval_preset.name != run.preset.name else {}
    extra.update(eval_seconds(current, values, everything=wanted != budget))
    if wanted != budget:  # the old budget's numbers go: nothing of it is left beside the new
        kept = {k: v for k, v in current.items() if k in RUNNER_KEYS}
        store.write_json(Path(run_dir) / store.METRICS, {**kept, **values, **extra,
                                                         "not_applicable": na})
        return store.read_json(Path(run_dir) / store.METRICS)
    return store.update_metrics(Path(run_dir), {**values, **extra, "not_applicable": na})


def eval_seconds(current: dict[str, Any], values: dict[str, Any], everything: bool = False
                 ) -> dict[str, float]:
    """The row's ``eval_seconds`` once ``values`` join it: the recorded total with the
    seconds of each metric measured again (``_seconds_<metric>``; every one where
    ``everything``, a new budget) taken out and the new ones put in, so that the report's
    cost table tells what the row's numbers cost now. {} where none was recorded."""
    if not isinstance(current.get("eval_seconds"), (int, float)):
        return {}
    new = {k: v for k, v in values.items() if k.startswith("_seconds_") and isinstance(v, (int, float))}
    old = {k: v for k, v in current.items() if k.startswith("_seconds_") and isinstance(v, (int, float))
           and (everything or k in new)}
    return {"eval_seconds": round(current["eval_seconds"] - sum(old.values()) + sum(new.values()), 2)}


# what the runner records in metrics.json beside the metrics: kept when a row changes budget
RUNNER_KEYS = frozenset({"status", "reason", "epochs", "train_seconds", "eval_seconds"})


def row_metrics(current: dict[str, Any], names: Iterable[str], trained_with: Iterable[str] = ()
                ) -> tuple[str, ...]:
    """What a row measured again under a new budget holds: the metrics the run was made with
    (``--metrics``; every default metric when none was named), those its metrics.json holds
    (each records ``_seconds_<metric>``), and ``names``."""
    from genbench.metrics import requested_metrics

    ran = [k[len("_seconds_"):] for k in current if k.startswith("_seconds_")]
    base = list(trained_with) or [e.name for e in requested_metrics(())]
    return tuple(dict.fromkeys([*base, *ran, *names]))
