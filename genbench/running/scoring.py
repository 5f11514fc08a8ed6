"""``genbench score``: outside samples scored as genbench scores its own models' samples.

A model trained elsewhere gets every sample metric that needs no model (``quality``:
FID, KID, precision/recall, density/coverage; ``modes``: Inception Score and mode
coverage; ``memorization``) through the very adapters a run's evaluation uses: the
samples stand in for a model whose ``sample`` hands them out in order (:class:`Replay`),
so the feature space, the fixed real subsets, the floor and every setting are shared with
the runs, not copied. The preset (``quick`` by default) sets the counts: the first
``n_quality`` samples are scored, as a run draws ``n_quality``; fewer are scored at their
own count, recorded as ``n_quality`` with a warning (FID is biased by the count).

The result is a run folder ``<results>/<dataset>/<name>/<run-id>/`` whose ``config.json``
says ``"external": true`` with the samples' SHA-256, how they were read (and resized) and
the command, and whose ``metrics.json`` holds the sample metrics only: an outside model
never gets a likelihood. Every input check happens before the folder is created.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from genbench import store
from genbench.errors import GenbenchError
from genbench.running.outside import OutsideSamples, file_sha256, fit_to, read_samples, resize_record, to_unit

SAMPLE_METRICS = ("quality", "modes", "memorization")  # every sample metric needing no model
MIN_SAMPLES = 10  # the k-NN metrics' own minimum (quality refuses n_quality below it)
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")
EXTERNAL = "external"  # the config.json flag the report reads
FID_ONLY = "mu and sigma only (pytorch-fid's format): FID only"


@dataclass(frozen=True)
class PresetOnly:
    """An empty model config: ``--set`` takes preset settings only here."""


class Replay(torch.nn.Module):
    """The outside samples as a 'model': ``sample(n)`` hands out the next n, in order, as
    float images in [0, 1] of the dataset's size (converted one block at a time)."""

    def __init__(self, samples: OutsideSamples, variant: str, size: tuple[int, int],
                 resize: str | None) -> None:
        super().__init__()
        self.samples, self.variant, self.size, self.resize = samples, variant, size, resize
        self.pos = 0

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.pos + n > len(self.samples):
            raise GenbenchError(f"asked for more than the {len(self.samples)} samples given")
        block = self.samples.images[self.pos : self.pos + n]
        self.pos += n
        return to_unit(block, self.variant, self.size, self.resize)


def check_label(name: str) -> str:
    """``name`` as a results folder name: safe, and not a registered model's name."""
    from genbench.registry import MODELS

    if not isinstance(name, str) or not LABEL.fullmatch(name):
        raise GenbenchError(f"--name {name!r}: use letters, digits and . _ + - (up to 64, not "
                            "starting with a symbol), e.g. --name stylegan2-seed0")
    if name in MODELS:
        raise GenbenchError(f"--name {name!r} is a genbench model; name the outside samples "
                            f"apart (e.g. --name {name}-external)")
    return name


def score(samples: Any, *, dataset: str, name: str, variant: str | None = None,
          preset: str = "quick", overrides: Mapping[str, str] | None = None, seed: int = 0,
          resize: str | None = None, results: str | Path = "results", device: str = "cpu",
          data_dir: str | None = None, command: str = "", reference_stats: str | Path | None = None,
          progress: Any = None, note: Callable[[str], None] | None = None) -> Any:
    """Score outside ``samples`` (a path, tensor or array) against ``dataset`` and store them
    as an external run; returns a :class:`genbench.running.training.RunOutcome`."""
    from genbench.data import DataRequest, load_dataset
    from genbench.presets import get_preset
    from genbench.running.training import RunOutcome, resolve_device
    from genbench.settings import resolve

    check_label(name)
    _, p = resolve(PresetOnly, {}, get_preset(preset), dict(overrides or {}))
    given = read_samples(samples)
    results = Path(results)
    store.check_results_root(results)
    dev = resolve_device(device)
    data = load_dataset(DataRequest(dataset, variant, data_dir, str(dev))).subset_train(p.max_train)
    for line in data.notes:
        _note(line, note)
    laid = fit_to(given, data.info.shape, data.info.name, resize)
    if len(laid) < MIN_SAMPLES:
        raise GenbenchError(f"{len(laid)} samples; the k-NN metrics (precision/recall, density/"
                            f"coverage, memorization) need at least {MIN_SAMPLES}")
    if len(laid) < p.n_quality:  # scored at their own count, recorded as n_quality
        _note(f"scoring all {len(laid)} samples, fewer than the {p.name} preset's n_quality="
              f"{p.n_quality} that runs draw (recorded as n_quality={len(laid)}; FID is biased by "
              "the count: compare with runs at equal counts)", note)
        p = p.with_overrides(n_quality=len(laid))
    elif len(laid) > p.n_quality:
        _note(f"scoring the first {p.n_quality} of {len(laid)} samples (the {p.name} preset's "
              f"n_quality, as runs draw; --set n_quality={len(laid)} scores them all)", note)
    extractor_for(data, p)  # a missing library or weights file fails here, before any folder
    given_stats = _given_stats(reference_stats, data, p) if reference_stats is not None else None
    folder = run_folder(results, data, p, name, seed, laid, resize)
    _not_beside_trained(folder.parent, name)
    config = _config(data, p, name, seed, laid, resize, command, dev)
    if given_stats is not None:
        config["reference_stats"] = {"path": str(reference_stats), "kind": given_stats[0],
                                     "sha256": file_sha256([Path(reference_stats)])}
    with store.locked(folder):
        store.write_json(folder / store.CONFIG, config)
        store.write_json(folder / store.METRICS, {"status": "running"})
        start = time.perf_counter()
        if given_stats is not None and given_stats[0] == FID_ONLY:
            values, na = _fid_only(laid, data, p, resize, given_stats[1], str(reference_stats))
        else:
            values, na = _evaluate(laid, data, p, seed, dev, folder, results, resize, progress)
        _grid(laid, data, resize, folder)
        metrics = {"status": "finished", "eval_seconds": round(time.perf_counter() - start, 2),
                   **values, "not_applicable": na}
        store.write_json(folder / store.METRICS, metrics)
    return RunOutcome("finished", folder, metrics)


def _not_beside_trained(model_dir: Path, name: str) -> None:
    """Refuse to file outside samples beside runs genbench trained under the same name (a
    plugin's, say): the report would take them all for outside samples, and `genbench run`
    would resume or --force a folder of the other kind."""
    for config in sorted(model_dir.glob(f"*/{store.CONFIG}")):
        if not store.read_json(config).get(EXTERNAL):
            raise GenbenchError(f"--name {name!r}: {model_dir} holds runs genbench trained "
                                f"({config.parent.name}); name the outside samples apart "
                                f"(e.g. --name {name}-external)")


def _note(line: str, note: Callable[[str], None] | None) -> None:
    """Tell the user (a GenbenchWarning: one yellow line on the command line)."""
    if note is not None:
        note(line)
        return
    import warnings

    from genbench.errors import GenbenchWarning

    warnings.warn(line, GenbenchWarning, stacklevel=3)


def run_folder(results: Path, data: Any, p: Any, name: str, seed: int, samples: OutsideSamples,
               resize: str | None) -> Path:
    """``<results>/<dataset>/<name>/<preset>-<variant>-seed<S>-<hash>``: the same samples
    scored the same way land in the same folder (and are rescored in place)."""
    identity = {EXTERNAL: samples.sha256, "preset": dataclasses.asdict(p), "resize": resize,
                "dataset": data.info.name, "variant": data.info.variant,
                "splits": data.info.splits}
    rid = store.run_id(p.name, data.info.variant, seed, identity)
    return store.run_dir(results, data.info.name, name, rid)


def _config(data: Any, p: Any, name: str, seed: int, samples: OutsideSamples,
            resize: str | None, command: str, device: torch.device) -> dict[str, Any]:
    from genbench.running.training import versions

    info = data.info
    return {
        "model": name, EXTERNAL: True,
        "samples": {"source": samples.source, "sha256": samples.sha256, "given": len(samples),
                    "scored": p.n_quality, "dtype": samples.dtype, "layout": samples.layout,
                    "shape": list(samples.images.shape[1:]),
                    "resize": resize_record(samples, info.shape[1:], resize),
                    "read_as": ("uint8 in the variant's mean form, as the dataset's images"
                                if samples.dtype == "uint8" else "float in [0, 1], as given")},
        "model_config": {}, "preset": dataclasses.asdict(p),
        "dataset": {"name": info.name, "variant": info.variant, "shape": list(info.shape),
                    "splits": info.splits, "observation": info.observation,
                    "num_classes": info.num_classes, "num_attributes": info.num_attributes,
                    "source": data.source, "notes": data.notes},
        "seed": seed, "device": str(device), "versions": versions(), "command": command,
        "capabilities": ["sample"], "metrics": list(SAMPLE_METRICS),
    }


def _evaluate(samples: OutsideSamples, data: Any, p: Any, seed: int, device: torch.device,
              folder: Path, results: Path, resize: str | None, progress: Any
              ) -> tuple[dict[str, float], dict[str, str]]:
    """The run evaluation's own sample metrics on the replayed samples."""
    from genbench.metrics import EvalContext, evaluate_metrics
    from genbench.metrics.features import default_cache_dir

    model = Replay(samples, data.info.variant, tuple(data.info.shape[1:]), resize)
    ctx = EvalContext(model=model, data=data, preset=p, seed=seed, device=device,
                      cache_dir=default_cache_dir(), results_root=results, run_dir=folder)
    return evaluate_metrics(ctx, SAMPLE_METRICS, progress)


def _grid(samples: OutsideSamples, data: Any, resize: str | None, folder: Path) -> None:
    from genbench.images import save_grid

    first = to_unit(samples.images[:64], data.info.variant, tuple(data.info.shape[1:]), resize)
    save_grid(first, folder / "samples.png")


def command_line(samples: Any, *, dataset: str, name: str, variant: str | None, preset: str,
                 overrides: Iterable[str], seed: int, resize: str | None,
                 results: str | Path, reference_stats: str | Path | None = None) -> str:
    """The `genbench score` command that scores the same samples the same way."""
    import shlex

    where = str(samples) if isinstance(samples, (str, Path)) else "SAMPLES"
    args = ["genbench", "score", where, "--dataset", dataset, "--name", name]
    args += ["--variant", variant] if variant else []
    args += ["--preset", preset] if preset != "quick" else []
    args += [a for kv in overrides for a in ("--set", kv)]
    args += ["--seed", str(seed)] if seed else []
    args += ["--resize", resize] if resize else []
    args += ["--results", str(results)] if Path(results) != Path("results") else []
    args += ["--reference-stats", str(reference_stats)] if reference_stats else []
    return shlex.join(args)


def extractor_for(data: Any, p: Any) -> Any:
    """The extractor the preset's sample metrics use (the one ``quality`` loads)."""
    from genbench.metrics.features import default_cache_dir, get_extractor

    return get_extractor(data, kind=p.feature_extractor, epochs=p.feature_epochs,
                         cache_dir=default_cache_dir(), inception_weights=p.inception_weights,
                         feature_weights=p.feature_weights)


def _given_stats(path: str | Path, data: Any, p: Any) -> tuple[str, Any]:
    """``--reference-stats FILE``, checked against the reference the samples are compared
    with: a genbench set must match it field for field (then it is cached and used); a file
    of mu and sigma alone (pytorch-fid's) serves FID only, in a feature space of its width."""
    from genbench.metrics import reference

    ext = extractor_for(data, p)
    ref = reference.load(Path(path))
    if isinstance(ref, reference.ReferenceSet):
        wanted = reference.reference_key(ext, data, p.n_quality)
        if (why := reference.mismatch(ref.key, wanted)) is not None:
            raise GenbenchError(f"--reference-stats {path} cannot be the reference: {why}; make "
                                f"matching ones with `genbench stats {data.info.name} --preset {p.name}`")
        reference.store_in_cache(ref)  # identical to what the metrics would compute
        return "genbench reference set", ref
    dim = ext(torch.zeros(1, *data.info.shape, device=data.device))[0].shape[1]
    mu, sigma = ref["mu"], ref["sigma"]
    if mu.dim() != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise GenbenchError(f"--reference-stats {path}: mu {tuple(mu.shape)} and sigma "
                            f"{tuple(sigma.shape)} are not a mean and its covariance")
    if mu.shape[0] != dim:
        raise GenbenchError(f"--reference-stats {path} holds {mu.shape[0]}-d statistics; the feature "
                            f"space {ext.feature_space} gives {dim}-d features (pytorch-fid's files "
                            "are 2048-d Inception statistics)")
    return FID_ONLY, ref


def _fid_only(samples: OutsideSamples, data: Any, p: Any, resize: str | None,
              stats: dict[str, torch.Tensor], path: str) -> tuple[dict[str, Any], dict[str, str]]:
    """FID of the samples against a file's mean and covariance; the rest is n/a, saying so."""
    from genbench.metrics.frechet import fid_features_to_statistics, frechet_distance
    from genbench.metrics.quality import DISTANCE_KEYS, MODE_KEYS, generated_features

    ext = extractor_for(data, p)
    model = Replay(samples, data.info.variant, tuple(data.info.shape[1:]), resize)
    feats = generated_features(model, ext, p.n_quality, seed=0, device=data.device).features
    mu, sigma = fid_features_to_statistics(feats).mean_cov()
    fid = max(float(frechet_distance(mu, sigma, stats["mu"], stats["sigma"])), 0.0)
    why = (f"not measured: --reference-stats {path} holds only mu and sigma (pytorch-fid's "
           "format), which serve FID only")
    na = {k: why for k in (*DISTANCE_KEYS, *MODE_KEYS, "copied_fraction", "copied_excess")
          if k != "fid"}
    return {"fid": fid, "feature_space": ext.feature_space}, na


def make_stats(dataset: str, *, features: str | None = None, preset: str = "quick",
               variant: str | None = None, out: str | Path | None = None, device: str = "cpu",
               data_dir: str | None = None, overrides: Mapping[str, str] | None = None
               ) -> list[tuple[Any, Path]]:
    """Compute and cache every real feature set the sample metrics read at ``preset``'s
    counts (``genbench stats``); ``out`` also gets the test reference, to share. Returns
    (set, path) pairs, the reference first."""
    from genbench.data import DataRequest, load_dataset
    from genbench.metrics import reference
    from genbench.metrics.quality import reference_set
    from genbench.presets import get_preset
    from genbench.running.training import resolve_device

    sets = dict(overrides or {})
    if features is not None:
        sets["feature_extractor"] = features
    _, p = _resolve_preset(get_preset(preset), sets)
    if out is not None:
        store.check_output_file(Path(out), "--out")
    data = load_dataset(DataRequest(dataset, variant, data_dir, str(resolve_device(device))))
    data = data.subset_train(p.max_train)
    ext = extractor_for(data, p)
    made = []
    for split, n in dict.fromkeys(reference.metric_sets(data, p.n_quality)):
        x = data.split(split).x
        ref = reference_set(ext, x, data.info.variant, n, dataset=data.info.name, split=split)
        made.append((ref, reference.store_in_cache(ref)))
    if out is not None:
        reference.save(made[0][0], Path(out))
        made.append((made[0][0], Path(out)))
    return made


def _resolve_preset(p: Any, overrides: Mapping[str, str]) -> tuple[Any, Any]:
    from genbench.settings import resolve

    return resolve(PresetOnly, {}, p, dict(overrides))
