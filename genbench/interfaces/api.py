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

import json
import math
import operator
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench.errors import GenbenchError
from genbench.interfaces.notebook import GROUP, summary  # noqa: F401  (part of this API)

if TYPE_CHECKING:  # pandas and torch load lazily: `import genbench` stays cheap
    import pandas as pd
    import torch

    from genbench.data import DataBundle
    from genbench.running.training import RunOutcome

# columns of the tidy frame, in order
TIDY_COLUMNS = ("dataset", "variant", "preset", "model", "label", "config_id", "seed", "run_dir",
                "status", "superseded", "metric", "value", "stderr", "observation", "obs_noise",
                "feature_space", "floor", "higher_is_better", "nll", "bits_per_dim", "na_reason",
                "config")
# run facts in the wide frame that are not metrics
_META = frozenset({"dataset", "model", "preset", "variant", "seed", "run_dir", "status", "reason",
                   "feature_space", "eval_preset", "obs_sigma", "obs_flip", "model_name",
                   "config_key", "config_id", "superseded"})


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

    The configuration, as the report groups by it: ``label`` (the report's row name: the
    model, plus the settings that differ among its configurations in the folder, e.g.
    ``vae (latent_dim=2, lr=0.01)``), ``config_id`` (a short hash of the resolved settings),
    ``config`` (every resolved setting, as JSON), ``superseded`` (True for an older run of
    a configuration and seed that was run again: the newest counts), and one column per
    setting whose value differs between runs of the folder (the axes of a sweep, such as
    ``latent_dim``; ``config_<name>`` where the name is taken by another column).
    """
    import pandas as pd

    import genbench.metrics  # noqa: F401  (registers the metrics: which way is better)
    from genbench import store

    root = Path(results)
    if not root.exists():
        raise GenbenchError(f"no results folder {root}; run `genbench run` first or pass "
                            "the folder that holds <dataset>/<model>/<run-id>/")
    wide = _with_configs(store.load_results(root))
    rows: list[dict[str, Any]] = []
    for run in wide.to_dict("records") if not wide.empty else []:
        rows.extend(_tidy_rows(run))
    df = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    if df.empty:
        return df
    # n/a for attributes the dataset does not have (20 edit_* keys per run on plain digits)
    lacks = df["value"].isna() & df["na_reason"].fillna("").str.contains(_DATASET_LACKS, regex=False)
    df = df[~lacks].reset_index(drop=True)
    df = _sweep_columns(df, wide)
    df["superseded"] = df["superseded"].astype(bool)
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    for col in ("value", "stderr", "obs_noise", "floor", "nll", "bits_per_dim"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df.sort_values(["dataset", "variant", "preset", "model", "seed", "metric"],
                          kind="stable", na_position="last").reset_index(drop=True)


def _with_configs(wide: pd.DataFrame) -> pd.DataFrame:
    """The store's one-row-per-run frame with the report's configuration columns
    (:func:`genbench.report.configs.annotate`), the preset spelled as the report does."""
    import hashlib

    from genbench import store
    from genbench.report import configs

    if wide.empty:
        return wide
    cfgs = [store.read_json(Path(d) / store.CONFIG) for d in wide["run_dir"]]
    wide = wide.copy()
    for col in ("variant", "preset"):
        wide[col] = wide[col].fillna("?") if col in wide else "?"
    if "eval_preset" in wide:
        other = wide["eval_preset"].notna() & (wide["eval_preset"] != wide["preset"])
        wide.loc[other, "preset"] = wide["preset"] + " evaluated " + wide["eval_preset"].astype(str)
    if "status" not in wide:
        wide["status"] = "unknown"
    wide = configs.annotate(wide, cfgs)
    wide["config_id"] = [hashlib.sha1(k.encode()).hexdigest()[:8] for k in wide[configs.KEY]]
    return wide


def _sweep_columns(df: pd.DataFrame, wide: pd.DataFrame) -> pd.DataFrame:
    """One column per setting that differs between the runs of the folder (a sweep's axes)."""
    from genbench.report import configs

    by_run = dict(zip(wide["run_dir"], wide[configs.SETTINGS], strict=True))
    axes: set[str] = set()  # within one model's runs: another model's fields are no sweep
    for _, sub in wide.groupby(["dataset", "variant", "preset", configs.NAME], dropna=False):
        axes.update(configs.differing(list(sub[configs.SETTINGS])))
    for name in sorted(axes):
        col = name if name not in df.columns else f"config_{name}"
        df[col] = [by_run.get(d, {}).get(name) for d in df["run_dir"]]
    return df


def _present(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _tidy_rows(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    from genbench.report import glossary

    metrics = {k: v for k, v in run.items() if k != "settings" and _present(v)}
    status = metrics.get("status", "unknown")
    preset = metrics.get("preset") or "?"  # "TRAINED evaluated P" already (_with_configs)
    base = {"dataset": metrics.get("dataset"), "variant": metrics.get("variant") or "?",
            "preset": preset, "model": metrics.get("model_name", metrics.get("model")),
            "label": metrics.get("model"), "config_id": metrics.get("config_id"),
            "seed": metrics.get("seed"), "run_dir": metrics.get("run_dir"), "status": status,
            "superseded": bool(metrics.get("superseded", False)),
            "config": json.dumps(run.get("settings") or {}, sort_keys=True, default=str)}
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


_DATASET_LACKS = "has no attributes to edit"  # the edits metric's n/a reason on such data
_QUALITY_KEYS = frozenset({"fid", "kid", "precision", "recall", "density", "coverage",
                           "inception_score", "mode_kl", "classes_covered", "feature_accuracy"})


def _is_log_likelihood(key: str) -> bool:
    """An estimate of log p(x) in nats/image (its metric declares it): shown also as NLL and bits/dim."""
    from genbench.report import glossary

    return key in glossary.log_likelihood_keys()


def _observation(key: str, metrics: Mapping[str, Any], shared_scheme: bool
                 ) -> tuple[str | None, float | None]:
    """The p(x|z) a likelihood key was measured under, and its noise level, as its metric
    declares (``ResultKey.observation``)."""
    from genbench.registry import result_key

    declared = result_key(key)
    under = declared.observation if declared is not None else ""
    if under == "parzen window":
        return under, _number(metrics.get(f"{key}_sigma"))
    if not under:
        return None, None
    sigma, flip = _number(metrics.get("obs_sigma")), _number(metrics.get("obs_flip"))
    chosen = ("shared gaussian", sigma) if sigma is not None else (
        ("shared bernoulli", flip) if flip is not None else None)
    if under == "shared" or (under == "model" and not shared_scheme and chosen is not None):
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


def load_history(results: str | Path = "results") -> pd.DataFrame:
    """Every run's history.csv as one tidy frame: one row per run, epoch and logged term
    (``dataset, variant, preset, model, label, seed, run_dir, epoch, term, value``): the
    training curves, ready for ``seaborn.relplot(x="epoch", y="value", hue="label",
    col="term", kind="line")``. Timing columns (``seconds``, ``images_per_s``) are terms too."""
    import pandas as pd

    from genbench import store

    cols = ["dataset", "variant", "preset", "model", "label", "seed", "run_dir", "epoch", "term",
            "value"]
    frames = []
    for run in _runs(results).to_dict("records"):
        path = Path(run["run_dir"]) / store.HISTORY
        if not path.exists():
            continue
        h = pd.read_csv(path)
        if "epoch" not in h:
            h["epoch"] = range(1, len(h) + 1)
        h = h.melt(id_vars="epoch", var_name="term", value_name="value")
        frames.append(h.assign(**{k: run.get(k) for k in cols if k not in h}))
    if not frames:
        return pd.DataFrame(columns=cols)
    out = pd.concat(frames, ignore_index=True)[cols]
    out["value"] = pd.to_numeric(out["value"], errors="coerce")
    return out


def load_per_image(results: str | Path = "results") -> pd.DataFrame:
    """Every run's per_image.json as one tidy frame: one row per run, estimate and test
    image (``dataset, variant, preset, model, label, seed, run_dir, metric, image, value``),
    so models are compared on the same images: ``df.pivot_table(index="image",
    columns="label", values="value")`` for one metric gives the paired table."""
    import pandas as pd

    from genbench import store

    cols = ["dataset", "variant", "preset", "model", "label", "seed", "run_dir", "metric", "image",
            "value"]
    rows = []
    for run in _runs(results).to_dict("records"):
        path = Path(run["run_dir"]) / "per_image.json"
        if not path.exists():
            continue
        for key, rec in store.read_json(path).items():
            if not (isinstance(rec, dict) and isinstance(rec.get("indices"), list)
                    and isinstance(rec.get("values"), list)):
                continue
            base = {k: run.get(k) for k in cols[:7]}
            rows.extend({**base, "metric": key, "image": int(i), "value": float(v)}
                        for i, v in zip(rec["indices"], rec["values"], strict=False))
    return pd.DataFrame(rows, columns=cols)


def _runs(results: str | Path) -> pd.DataFrame:
    """One row per run (the newest of a configuration and seed run twice) with the tidy
    frame's run columns."""
    import pandas as pd

    df = load_results(results)
    cols = ["dataset", "variant", "preset", "model", "label", "seed", "run_dir", "superseded"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    runs = df[cols].drop_duplicates("run_dir")
    return runs[~runs["superseded"]]


# -- running, evaluating, loading ----------------------------------------------------------

def run(models: str | Sequence[str], *, dataset: str = "mnist", variant: str | None = None,
        preset: str = "quick", seeds: int | Sequence[int] = (0,), epochs: int | None = None,
        device: str = "auto", overrides: Mapping[str, Any] | Sequence[str] = (),
        results: str | Path = "results", metrics: str | Sequence[str] = (),
        data_dir: str | None = None, force: bool = False, plugins: Iterable[str | Path] = (),
        log: Sequence[str] = (), quiet: bool = False) -> list[RunOutcome]:
    """Train ``models`` on ``dataset`` for each seed, evaluate them; what ``genbench run`` does.

    Returns one :class:`genbench.running.training.RunOutcome` per (model, seed) with ``status``
    ("finished", "skipped" when already done, "failed"), ``run_dir`` and ``metrics``.
    ``overrides`` are ``--set`` values ({"latent_dim": 2} or ["latent_dim=2"]); ``log``
    may hold "tensorboard". Progress goes to the terminal unless ``quiet``.
    """
    from rich.console import Console

    from genbench.running.runs import RunRequest, run_all

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
    request = RunRequest(tuple(names), dataset=dataset, variant=variant, preset=preset,
                         seeds=tuple(seed_list), epochs=epochs, device=device, overrides=tuple(sets),
                         results=Path(results), metrics=_metric_names(metrics), data_dir=data_dir,
                         force=force, log=logs,
                         command=_command(names, dataset, variant, preset, seed_list, epochs, sets,
                                          _metric_names(metrics), results, logs, device))
    return run_all(request, console)


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

    from genbench.presets import get_preset
    from genbench.running.display import EvalDisplay
    from genbench.running.evaluation import evaluate_run
    from genbench.running.training import resolve_device

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
    from genbench.running.training import resolve_device

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


def score(samples: Any, *, dataset: str, name: str, variant: str | None = None,
          preset: str = "quick", overrides: Mapping[str, Any] | Sequence[str] = (), seed: int = 0,
          resize: str | None = None, results: str | Path = "results", device: str = "auto",
          data_dir: str | None = None, reference_stats: str | Path | None = None,
          progress: Any = None) -> RunOutcome:
    """Score samples from a model genbench did not train, as ``genbench score`` does.

    ``samples``: a tensor or numpy array (uint8 0..255 or float in [0, 1]; (N, H, W),
    (N, H, W, C) or (N, C, H, W)), or the path of an ``.npz``/``.npy``/``.pt`` file or a
    folder of PNG/JPEG images. They get FID, KID, precision/recall, density/coverage, mode
    coverage and memorization in the runs' feature space against the runs' real subsets,
    stored as an external run ``<results>/<dataset>/<name>/<run-id>/``. Returns its outcome
    (``run_dir``, ``metrics``). ``reference_stats``: a ``genbench stats`` file (checked
    against the reference it stands for), or pytorch-fid's mu/sigma ``.npz`` (FID only).
    """
    from genbench.running.scoring import command_line
    from genbench.running.scoring import score as score_samples
    from genbench.settings import parse_overrides

    sets = ([f"{k}={v}" for k, v in overrides.items()] if isinstance(overrides, Mapping)
            else list(overrides))
    seed = _whole(seed, "seed", "seed=0")
    _load_plugins()
    return score_samples(samples, dataset=dataset, name=name, variant=variant, preset=preset,
                         overrides=parse_overrides(sets), seed=seed, resize=resize,
                         results=results, device=device, data_dir=data_dir,
                         reference_stats=reference_stats,
                         command=command_line(samples, dataset=dataset, name=name,
                                              variant=variant, preset=preset, overrides=sets,
                                              seed=seed, resize=resize, results=results,
                                              reference_stats=reference_stats),
                         progress=progress)
