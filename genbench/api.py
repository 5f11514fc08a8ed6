"""genbench from Python: the functions the command line is a thin shell over.

    import genbench
    outcomes = genbench.run(["vae", "dcgan"], dataset="mnist", preset="quick", seeds=[0, 1])
    df = genbench.load_results("results")      # tidy: one row per run and metric
    genbench.summary(df)                        # the report's table: mean, std, seeds
    model, data = genbench.load_model(outcomes[0].run_dir)
    images = genbench.sample(model, 16, seed=0)

Every function checks its input as the command line does and raises
:class:`genbench.errors.GenbenchError` with the same one-line message.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench.errors import GenbenchError

if TYPE_CHECKING:  # pandas and torch load lazily: `import genbench` stays cheap
    import pandas as pd
    import torch

    from genbench.data import DataBundle
    from genbench.training import RunOutcome

# columns of the tidy frame, in order
TIDY_COLUMNS = ("dataset", "variant", "preset", "model", "seed", "run_dir", "status", "metric",
                "value", "stderr", "observation", "obs_noise", "feature_space", "floor",
                "higher_is_better", "nll", "bits_per_dim", "na_reason")
GROUP = ("dataset", "variant", "preset", "model", "metric", "observation", "feature_space")
# run facts in the wide frame that are not metrics
_META = frozenset({"dataset", "model", "preset", "variant", "seed", "run_dir", "status", "reason",
                   "feature_space", "eval_preset", "obs_sigma", "obs_flip"})
# log-likelihoods in nats/image (higher is better): shown also as NLL and bits/dim
_LOG_LIKELIHOODS = ("test_elbo", "test_iwae", "test_ais", "parzen")
# metrics that depend on the observation model p(x|z)
_OBS_PREFIXES = ("test_elbo", "test_recon_term", "test_kl_term", "test_iwae", "test_ais", "bdmc_",
                 "ais_minus_iwae", "ais_accept")


def _load_plugins(plugins: Iterable[str | Path] = ()) -> None:
    from genbench.plugins import load_plugins

    load_plugins([Path(p) for p in plugins])


# -- results -> DataFrames ----------------------------------------------------------------

def load_results(results: str | Path = "results") -> pd.DataFrame:
    """Every run under ``results`` as a tidy frame: one row per run and metric.

    Columns: ``dataset, variant, preset, model, seed, run_dir, status, metric, value,
    stderr`` (the estimator's standard error, where it has one), ``observation`` (the p(x|z)
    a likelihood was measured under: "own p(x|z)", "shared gaussian", "shared bernoulli"),
    ``obs_noise`` (its chosen sigma or flip probability), ``feature_space`` (sample-quality
    metrics), ``floor`` (the real-versus-real floor of a sample-quality metric),
    ``higher_is_better``, ``nll`` and ``bits_per_dim`` (log-likelihoods), ``na_reason`` (a
    metric that does not apply: value NaN and the reason). A run that failed keeps one row
    with ``metric`` NaN and its reason, so it is never silently missing.

    A run evaluated with another preset's settings (``genbench eval --preset P``) has
    preset "TRAINED evaluated P", as in the report.
    """
    import pandas as pd

    import genbench.metrics  # noqa: F401  (registers the metrics: which way is better)
    from genbench import store

    root = Path(results)
    if not root.exists():
        raise GenbenchError(f"no results folder {root}; run `genbench run` first or pass "
                            "the folder that holds <dataset>/<model>/<run-id>/")
    wide = store.load_results(root)
    rows: list[dict[str, Any]] = []
    for run in wide.to_dict("records") if not wide.empty else []:
        rows.extend(_tidy_rows(run))
    df = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    if df.empty:
        return df
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    for col in ("value", "stderr", "obs_noise", "floor", "nll", "bits_per_dim"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.sort_values(["dataset", "variant", "preset", "model", "seed", "metric"],
                          kind="stable", na_position="last").reset_index(drop=True)


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _tidy_rows(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    from genbench.report import glossary

    metrics = {k: v for k, v in run.items() if _present(v)}
    status = metrics.get("status", "unknown")
    preset = metrics.get("preset") or "?"
    if _present(metrics.get("eval_preset")) and metrics["eval_preset"] != preset:
        preset = f"{preset} evaluated {metrics['eval_preset']}"
    base = {"dataset": metrics.get("dataset"), "variant": metrics.get("variant") or "?",
            "preset": preset, "model": metrics.get("model"), "seed": metrics.get("seed"),
            "run_dir": metrics.get("run_dir"), "status": status}
    dims, continuous = _dims(metrics.get("run_dir"))
    shared_scheme = any("_shared" in k for k in metrics)
    out = []
    keys = [k for k in metrics if k not in _META and not k.startswith(("_", "floor_", "na:"))
            and not k.endswith("_stderr") and _number(metrics[k]) is not None]
    na = {k[3:]: str(v) for k, v in metrics.items() if k.startswith("na:")}
    for key in sorted(set(keys) | (set(na) - set(keys))):
        value = _number(metrics.get(key))
        obs, noise = _observation(key, metrics, shared_scheme)
        quality = _present(metrics.get(f"floor_{key}")) or key in _QUALITY_KEYS
        row = {**base, "metric": key, "value": value,
               "stderr": _number(metrics.get(f"{key}_stderr")),
               "observation": obs, "obs_noise": noise,
               "feature_space": metrics.get("feature_space") if quality else None,
               "floor": _number(metrics.get(f"floor_{key}")),
               "higher_is_better": glossary.direction(key),
               "nll": None, "bits_per_dim": None,
               "na_reason": na.get(key) if value is None else None}
        if value is not None and _is_log_likelihood(key):
            row["nll"] = -value
            bpd = _number(metrics.get(f"{key}_bpd"))
            row["bits_per_dim"] = bpd if bpd is not None else (
                -value / (dims * math.log(2)) + (8.0 if continuous else 0.0) if dims else None)
        out.append(row)
    if not out:  # a failed or unfinished run without numbers: one row says so
        out.append({**base, "metric": None, "value": None, "stderr": None, "observation": None,
                    "obs_noise": None, "feature_space": None, "floor": None,
                    "higher_is_better": None, "nll": None, "bits_per_dim": None,
                    "na_reason": metrics.get("reason")})
    return out


_QUALITY_KEYS = frozenset({"fid", "kid", "precision", "recall", "density", "coverage",
                           "inception_score", "mode_kl", "classes_covered", "feature_accuracy"})


def _is_log_likelihood(key: str) -> bool:
    return key.removesuffix("_shared") in _LOG_LIKELIHOODS


def _observation(key: str, metrics: Mapping[str, Any], shared_scheme: bool
                 ) -> tuple[str | None, float | None]:
    """The p(x|z) a likelihood key was measured under, and its noise level."""
    if key == "parzen":
        return "parzen window", _number(metrics.get("parzen_sigma"))
    if not key.startswith(_OBS_PREFIXES):
        return None, None
    sigma, flip = _number(metrics.get("obs_sigma")), _number(metrics.get("obs_flip"))
    chosen = ("shared gaussian", sigma) if sigma is not None else (
        ("shared bernoulli", flip) if flip is not None else None)
    own_only = key.startswith(("test_elbo", "test_recon_term", "test_kl_term"))
    if "_shared" in key or (not shared_scheme and not own_only and chosen is not None):
        return chosen or ("shared", None)
    return "own p(x|z)", None


def _dims(run_dir: str | None) -> tuple[int | None, bool]:
    """Pixels per image and whether the data are continuous, from the run's config."""
    from genbench import store

    if not run_dir:
        return None, False
    ds = store.read_config(Path(run_dir)).get("dataset", {})
    shape = ds.get("shape")
    dims = math.prod(shape) if shape else None
    return dims, ds.get("observation") == "gaussian" or ds.get("variant") == "continuous"


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """The report's table as a frame: per dataset, variant, preset, model and metric, the
    ``mean`` over seeds, their ``std`` (ddof=1; NaN for one seed), ``n_seeds``, and
    ``stderr`` (the estimator's own standard error, averaged over seeds), with
    ``higher_is_better`` and, for log-likelihoods, ``nll`` and ``bits_per_dim``.

    Only finished runs count, as in the report; sample-quality numbers are kept apart by
    ``feature_space`` and likelihoods by ``observation``.
    """
    import pandas as pd

    missing = [c for c in ("status", "metric", "value") if c not in df]
    if missing:
        raise GenbenchError(f"summary() needs the frame genbench.load_results() returns "
                            f"(missing columns: {', '.join(missing)})")
    cols = [*GROUP, "mean", "std", "n_seeds", "stderr", "higher_is_better", "nll", "bits_per_dim"]
    fin = df[(df["status"] == "finished") & df["metric"].notna() & df["value"].notna()].copy()
    if fin.empty:
        return pd.DataFrame(columns=cols)
    for col in ("observation", "feature_space"):
        fin[col] = fin[col].fillna("")
    grouped = fin.groupby(list(GROUP), sort=True, dropna=False)
    out = grouped.agg(mean=("value", "mean"), std=("value", lambda v: v.std(ddof=1)),
                      n_seeds=("value", "count"), stderr=("stderr", "mean"),
                      higher_is_better=("higher_is_better", "first"),
                      nll=("nll", "mean"), bits_per_dim=("bits_per_dim", "mean")).reset_index()
    for col in ("observation", "feature_space"):
        out[col] = out[col].replace("", None)
    out["n_seeds"] = out["n_seeds"].astype(int)
    return out[cols]


# -- running, evaluating, loading ----------------------------------------------------------

def run(models: str | Sequence[str], *, dataset: str = "mnist", variant: str | None = None,
        preset: str = "quick", seeds: int | Sequence[int] = (0,), epochs: int | None = None,
        device: str = "auto", overrides: Mapping[str, Any] | Sequence[str] = (),
        results: str | Path = "results", metrics: str | Sequence[str] = (),
        data_dir: str | None = None, force: bool = False, plugins: Iterable[str | Path] = (),
        log: Sequence[str] = (), quiet: bool = False) -> list[RunOutcome]:
    """Train ``models`` on ``dataset`` for each seed, evaluate them; what ``genbench run`` does.

    Returns one :class:`genbench.training.RunOutcome` per (model, seed) with ``status``
    ("finished", "skipped" when already done, "failed"), ``run_dir`` and ``metrics``.
    ``overrides`` are ``--set`` values ({"latent_dim": 2} or ["latent_dim=2"]); ``log``
    may hold "tensorboard". Progress goes to the terminal unless ``quiet``.
    """
    from rich.console import Console

    from genbench.runs import run_all

    _load_plugins(plugins)
    names = [models] if isinstance(models, str) else list(models)
    if not names:
        raise GenbenchError("name at least one model (see `genbench list models`)")
    seed_list = [seeds] if isinstance(seeds, int) else list(seeds)
    if not seed_list:
        raise GenbenchError("give at least one seed")
    seed_list = [_whole(s, "seeds", "seeds=[0, 1]") for s in seed_list]
    epochs = None if epochs is None else _whole(epochs, "epochs", "epochs=10")
    sets = ([f"{k}={v}" for k, v in overrides.items()] if isinstance(overrides, Mapping)
            else list(overrides))
    console = Console(quiet=True) if quiet else Console()
    logs = (log,) if isinstance(log, str) else tuple(log)
    return run_all(models=names, dataset=dataset, variant=variant, preset=preset, epochs=epochs,
                   seeds=seed_list, device=device, overrides=sets, results=Path(results),
                   metrics=_metric_names(metrics), data_dir=data_dir, force=force,
                   console=console,
                   command=_command(names, dataset, variant, preset, seed_list, epochs, sets,
                                    _metric_names(metrics), results, logs, device),
                   log=logs)


def _whole(value: Any, what: str, example: str) -> int:
    """``value`` as an int (numpy ints too); a GenbenchError for 1.5, "2" or None."""
    try:
        return operator.index(value)
    except TypeError:
        raise GenbenchError(f"{what}: {value!r} is not a whole number (e.g. {example})") from None


def _metric_names(metrics: str | Sequence[str] | None) -> tuple[str, ...]:
    from genbench.registry import get_metric

    if not metrics:
        return ()
    names = [m.strip() for m in metrics.split(",")] if isinstance(metrics, str) else list(metrics)
    for name in names:
        get_metric(name)  # a typo fails here, with the closest names
    return tuple(n for n in names if n)


def _command(models: list[str], dataset: str, variant: str | None, preset: str,
             seeds: list[int], epochs: int | None, sets: list[str], metrics: tuple[str, ...],
             results: str | Path, log: tuple[str, ...], device: str) -> str:
    """The `genbench run` command that makes the same runs (recorded in config.json and
    shown at the top of the report, so a reader can remake them)."""
    import shlex

    args = ["genbench", "run", *models, "--dataset", dataset, "--preset", preset]
    args += ["--variant", variant] if variant else []
    args += [a for s in seeds for a in ("--seed", str(s))]
    args += ["--epochs", str(epochs)] if epochs is not None else []
    args += [a for kv in sets for a in ("--set", kv)]
    args += ["--metrics", ",".join(metrics)] if metrics else []
    args += ["--results", str(results)] if Path(results) != Path("results") else []
    args += [a for name in log for a in ("--log", name)]
    args += ["--device", device] if device != "auto" else []
    return shlex.join(args)


def evaluate(run_dir: str | Path, metrics: str | Sequence[str] = (), *, preset: str | None = None,
             device: str = "auto", data_dir: str | None = None, quiet: bool = True,
             plugins: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Add ``metrics`` (default: every default metric that applies) to a finished run without
    retraining, as ``genbench eval`` does; returns the run's updated metrics.json."""
    from rich.console import Console

    from genbench.evaluation import evaluate_run
    from genbench.presets import get_preset
    from genbench.progress import EvalDisplay
    from genbench.training import resolve_device

    _load_plugins(plugins)
    names = _metric_names(metrics)
    if preset is not None:
        get_preset(preset)
    _check_run_dir(run_dir)
    dev = str(resolve_device(device))
    watch = None if quiet else EvalDisplay(Console())
    try:
        return evaluate_run(Path(run_dir), names, preset, dev, data_dir, progress=watch)
    finally:
        if watch is not None:
            watch.stop()


def _check_run_dir(run_dir: str | Path) -> None:
    from genbench import store

    folder = Path(run_dir)
    if not (folder / store.CONFIG).exists():
        raise GenbenchError(f"{folder} is not a run folder (no config.json); pass "
                            "results/<dataset>/<model>/<run-id>")


def load_model(run_dir: str | Path, device: str = "cpu", data_dir: str | None = None, *,
               plugins: Iterable[str | Path] = ()) -> tuple[torch.nn.Module, DataBundle]:
    """The trained model of a run (``eval()`` mode, on ``device``) and its data bundle.

    :func:`sample` draws images from it; ``data.eval_x("test", 16)`` gives test images. A
    plugin model is reloaded from the folder its run recorded, or from ``plugins``.
    """
    from genbench.loading import load_run
    from genbench.training import resolve_device

    _load_plugins(plugins)
    _check_run_dir(run_dir)
    loaded = load_run(Path(run_dir), resolve_device(device), data_dir)
    return loaded.model, loaded.data


def sample(model: torch.nn.Module, n: int, *, seed: int | None = None,
           y: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` images (n, C, H, W) in [0, 1] from a model: its own ``sample``, or its decoder's
    mean at z drawn from its prior (the contract's derived sampler). ``seed`` fixes the
    draw; ``y`` gives a conditional model its labels."""
    import torch

    from genbench.contract import sample_from

    n = _whole(n, "n", "sample(model, 16)")
    if n < 1:
        raise GenbenchError(f"n must be at least 1, not {n}")
    if seed is not None:
        seed = _whole(seed, "seed", "seed=0")
    try:
        device = next(model.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device)
        gen.manual_seed(seed)
    with torch.no_grad():
        return sample_from(model, n, gen, y)
