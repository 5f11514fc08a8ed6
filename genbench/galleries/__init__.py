"""Galleries: pictures decoded from a run's checkpoint (samples, reconstructions, interpolation,
latent arithmetic, the 2-D manifold, a latent scatter, analogies, ...).

The one way in is :func:`render` (one gallery to one PNG) or :func:`render_all` (every gallery
that applies to a run). Both load the plugins and the checkpoint here; :mod:`.stored` writes
what the report shows into the store (at the end of evaluation, or ``genbench gallery
--results``), so ``genbench.report`` only places files.

A new gallery is a new module in this package whose function is decorated with
:func:`register_gallery`, plus one entry in ``MODULES`` below.
"""

from __future__ import annotations

import importlib
import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from genbench.errors import GenbenchError
from genbench.galleries.core import GALLERIES, Gallery, NotApplicable, register_gallery, unmet
from genbench.loading import LoadedRun, load_run, refuse_outside_folder
from genbench.store import check_output_file, read_metrics

__all__ = ["GALLERIES", "Gallery", "NotApplicable", "RunGalleries", "kinds", "register_gallery",
           "render", "render_across", "render_all"]

# The gallery modules, imported in this order (the report shows galleries in this order).
MODULES = [
    "decoded",  # samples, reconstructions, interpolation
    "arithmetic",  # arithmetic, manifold, scatter
    "analogies",  # conditional models
    "completions",  # autoregressive models (PixelCNN)
    "canvas",  # sequential models (DRAW)
    "compression",  # models with an encoder: the model beside JPEG and JPEG 2000 at its bits
    "pyramid",  # pyramid models (LAPGAN)
    "sweeps",  # attribute edits on data with attributes
    "factors",  # factor sweeps on data with set factors (DC-IGN's units, others' arithmetic)
    "copies",  # samples beside their nearest training images (memorization)
]

for _name in MODULES:
    importlib.import_module(f"genbench.galleries.{_name}")

from genbench.galleries.across import render_across  # noqa: E402  (one picture across a group's models)


def kinds() -> list[str]:
    return list(GALLERIES)


def _gallery(kind: str) -> Gallery:
    if kind not in GALLERIES:
        raise GenbenchError(f"unknown gallery kind {kind!r}; use one of {', '.join(GALLERIES)}")
    return GALLERIES[kind]


def _options_of(gallery: Gallery) -> set[str]:
    params = inspect.signature(gallery.fn).parameters
    return {p.name for p in params.values() if p.kind is p.KEYWORD_ONLY} - {"generator"}


def _draw(run: LoadedRun, gallery: Gallery, out_path: Path, seed: int, space: str | None,
          options: dict[str, Any]) -> Path:
    """Call one gallery with a fresh generator seeded ``seed`` on the run's device."""
    if "feature_space" in _options_of(gallery):
        options = {"feature_space": space, **options}
    gen = torch.Generator(device=run.data.device).manual_seed(seed)
    return gallery.fn(run, Path(out_path), generator=gen, **options)


def render(run_dir: Path, kind: str, out_path: Path | None = None, *, seed: int = 0,
           **options: Any) -> Path:
    """Decode one gallery of ``run_dir`` to a PNG (default ``<run_dir>/gallery_<kind>.png``).

    ``options`` are the gallery's own keyword arguments (e.g. ``n``, ``steps``); one it does
    not take is an error. ``seed`` seeds the generator of its random draws.
    """
    gallery = _gallery(kind)
    if unknown := sorted(set(options) - _options_of(gallery)):
        takes = ", ".join(sorted(_options_of(gallery))) or "no options"
        raise GenbenchError(f"gallery {kind!r} does not take {', '.join(unknown)} (it takes {takes})")
    strength = options.get("strength")
    if strength is not None and not math.isfinite(strength):
        raise GenbenchError(f"--strength {strength}: use a finite number")
    run_dir = Path(run_dir)
    _no_outside(run_dir)
    if out_path is not None:
        check_output_file(Path(out_path))
    run = load_run(run_dir)
    if reason := unmet(gallery, run.model):
        fits = [k for k, g in GALLERIES.items() if unmet(g, run.model) is None]
        raise GenbenchError(f"no {kind} gallery for {run.config['model']}: {reason}; "
                            f"try --kind {' or '.join(fits) or '(none applies)'}")
    space = read_metrics(run_dir).get("feature_space")
    return _draw(run, gallery, Path(out_path or run_dir / f"gallery_{kind}.png"), seed, space, options)


def _no_outside(run_dir: Path) -> None:
    """Outside samples (``genbench score``) have no model to decode: say where their samples are."""
    refuse_outside_folder(run_dir, "decode galleries from",
                          f"its first 64 samples are in {run_dir / 'samples.png'}")


@dataclass
class RunGalleries:
    """What :func:`render_all` made of one run, for a report."""

    model: str
    seed: int  # the run's training seed
    images: dict[str, Path] = field(default_factory=dict)  # kind -> PNG, in MODULES order
    captions: dict[str, str] = field(default_factory=dict)  # kind -> caption for this run
    # kind -> "n/a — why" or "failed — error": what a reader would not expect (a missing
    # evaluator classifier, a bug); the report says these
    skipped: dict[str, str] = field(default_factory=dict)
    # kind -> why the gallery is not meant for this model or data (NotApplicable: a 20-d latent
    # has no 2-D manifold); recorded, never shown
    not_applicable: dict[str, str] = field(default_factory=dict)


def render_all(run_dir: Path, out_dir: Path, *, seed: int = 0, run: LoadedRun | None = None,
               **options: Any) -> RunGalleries:
    """Every gallery that applies to the run's model, as ``out_dir/<kind>.png``.

    Galleries whose capabilities the model lacks are left out; one that raises
    :class:`NotApplicable` (not meant for this model or data: a latent that is not 2-D, data
    without labels) goes to ``not_applicable`` with its reason; one that cannot be drawn for a
    reason a reader would not expect (another GenbenchError, e.g. no evaluator classifier) or
    that fails goes to ``skipped``, and does not cost the others. ``options`` go to every gallery that takes
    them (e.g. ``n=8, steps=10, manifold_n=15``). A run that cannot be loaded raises; ``run``,
    the run already in memory (the runner's model at the end of evaluation), spares the load.
    """
    run_dir = Path(run_dir)
    _no_outside(run_dir)
    run = run if run is not None else load_run(run_dir)
    space = read_metrics(run_dir).get("feature_space")
    done = RunGalleries(run.config["model"], run.seed)
    for kind, gallery in GALLERIES.items():
        if unmet(gallery, run.model) is not None:
            continue
        own = {k: v for k, v in options.items() if k in _options_of(gallery)}
        try:
            done.images[kind] = _draw(run, gallery, Path(out_dir) / f"{kind}.png", seed, space, own)
        except NotApplicable as err:  # not meant for this kind of model: nothing to tell a reader
            done.not_applicable[kind] = str(err)
            continue
        except GenbenchError as err:
            done.skipped[kind] = f"n/a — {err}"
            continue
        except Exception as err:  # noqa: BLE001  (one gallery's bug must not cost the others)
            done.skipped[kind] = f"failed — {type(err).__name__}: {err}"
            continue
        done.captions[kind] = gallery.caption(run) if gallery.caption else gallery.description
    return done
