"""``genbench check MODEL``: is a model plugin ready, and which metrics will it get?

Builds the model on a tiny synthetic dataset with its smoke settings, runs one training step
through the runner's own :func:`~genbench.contract.step_model`, calls its lifecycle hooks,
draws samples and checks each capability's output (shape, finite, images in [0, 1]). Then it
lists every registered metric as "will get" or "n/a — reason", the reason naming the hook
that would unlock it. tests/test_contract.py runs the same check over every registered model,
so a new model is smoke-tested for free.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.distributions import Distribution

from genbench.contract import (
    DERIVED,
    HOOK,
    capabilities,
    draw,
    generate_from,
    missing_reason,
    optimizer_dict,
    sample_from,
    step_model,
)
from genbench.data import DataBundle, DataRequest, load_dataset
from genbench.errors import GenbenchError
from genbench.presets import PRESETS
from genbench.registry import METRICS, get_model
from genbench.settings import resolve

N_CHECK = 8  # images per capability check
BATCH = 16  # images in the one training step


@dataclass
class CheckResult:
    model: str
    source: str
    capabilities: frozenset[str] = frozenset()
    derived: frozenset[str] = frozenset()  # capabilities the core derives (no hook of its own)
    stats: dict[str, float] = field(default_factory=dict)  # of the one training step
    passed: list[str] = field(default_factory=list)  # one line per check that held
    problems: list[str] = field(default_factory=list)  # one line per check that failed
    warnings: list[str] = field(default_factory=list)  # legitimate, but worth knowing (no exit 1)
    metrics: list[tuple[str, str | None]] = field(default_factory=list)  # (name, n/a reason)

    @property
    def ok(self) -> bool:
        return not self.problems


def _attempt(result: CheckResult, stage: str, fn: Callable[[], str | None]) -> bool:
    """Run one check; its line (or its failure, in one line) goes into ``result``."""
    try:
        line = fn()
    except CheckWarning as err:
        result.warnings.append(f"{stage}: {err}")
        return True
    except (GenbenchError, TypeError) as err:
        result.problems.append(f"{stage}: {err}")
        return False
    except Exception as err:  # a plugin's bug: said in one line, the check goes on
        result.problems.append(f"{stage}: {type(err).__name__}: {err}")
        return False
    if line:
        result.passed.append(f"{stage}: {line}")
    return True


def _image_problem(x: torch.Tensor, shape: tuple[int, ...], what: str) -> str | None:
    if not isinstance(x, torch.Tensor):
        return f"{what} returned {type(x).__name__}, not a Tensor"
    if tuple(x.shape) != shape:
        return f"{what} has shape {tuple(x.shape)}, expected {shape}"
    if not torch.isfinite(x).all():
        return f"{what} has non-finite values"
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        return (f"{what} leaves [0, 1] (min {lo:.3g}, max {hi:.3g}): images are the "
                "decoder's mean in [0, 1]")
    return None


class CheckWarning(GenbenchError):
    """Legitimate but worth a line (a Gaussian decoder's mean outside [0, 1]); not a problem."""


def _images(x: torch.Tensor, shape: tuple[int, ...], what: str, real_valued: bool = False) -> str:
    """``real_valued``: the decoder's distribution has real support (a Gaussian), so its mean
    may leave [0, 1]; that is a warning, not a problem."""
    problem = _image_problem(x, shape, what)
    if problem and real_valued and "leaves [0, 1]" in problem:
        raise CheckWarning(problem.split(":")[0] + ": fine for a real-valued (e.g. Gaussian) "
                           "decoder's mean; sample metrics see images clamped to [0, 1] and "
                           "recon_bce is n/a (recon_mse is kept)")
    if problem:
        raise GenbenchError(problem)
    return f"{tuple(x.shape)} in [{float(x.min()):.2f}, {float(x.max()):.2f}]"


def _real_valued_decoder(model: Any, z: torch.Tensor, cond: dict[str, Any]) -> bool:
    """Whether ``decode(z)`` is a distribution with real support (Normal, Laplace, ...)."""
    from torch.distributions import constraints

    try:
        support = model.decode(z, **cond).support
    except Exception:  # noqa: BLE001  (the decode check itself reports a broken decode)
        return False
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return isinstance(support, type(constraints.real))


def _distribution(d: Any, batch: tuple[int, ...], event: tuple[int, ...] | None, what: str) -> str:
    if not isinstance(d, Distribution):
        raise GenbenchError(f"{what} returned {type(d).__name__}, not a torch Distribution")
    if tuple(d.batch_shape) != batch or (event is not None and tuple(d.event_shape) != event):
        raise GenbenchError(f"{what} has batch {tuple(d.batch_shape)}, event "
                            f"{tuple(d.event_shape)}; expected batch {batch}"
                            + (f", event {event}" if event is not None else ""))
    return f"{type(d).__name__}, batch {tuple(d.batch_shape)}, event {tuple(d.event_shape)}"


def _train_step(model: torch.nn.Module, data: DataBundle, result: CheckResult) -> str:
    optimizers = optimizer_dict(model.configure_optimizers())
    before = [p.detach().clone() for p in model.parameters()]
    batch = next(data.train_batches(BATCH, seed=0, epoch=0))
    stats = step_model(model, batch, optimizers)
    result.stats = {k: float(v) for k, v in stats.items()}
    bad = [k for k, v in result.stats.items() if not math.isfinite(v)]
    if bad:
        raise GenbenchError(f"non-finite {', '.join(bad)} after one step")
    if not any(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True)):
        raise GenbenchError("one step changed no parameter (is the optimizer stepped?)")
    shown = ", ".join(f"{k} {v:.4g}" for k, v in list(result.stats.items())[:6])
    return f"one step on {BATCH} images: {shown}"


def _check_presets(cls: type) -> str:
    names = [n for n in getattr(cls, "presets", {}) if n in PRESETS]
    for name in names:
        resolve(cls.Config, cls.presets, PRESETS[name], {})
    return f"{', '.join(names) or 'none'} set training settings only"


def _capability_checks(model: Any, data: DataBundle, result: CheckResult) -> None:
    """Call each hook the model has on a few test images and say what came back. One
    generator runs through the checks in order (the prior's draw, then the importance
    weights), so the numbers shown are the same on every call."""
    have = result.capabilities
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = data.eval_x("test", N_CHECK)
    y = data.eval_y("test", N_CHECK) if "condition" in have else None
    cond = {} if y is None else {"y": y}
    _generative_checks(model, data, result, gen, y, cond)
    _inference_checks(model, x, cond, gen, result)


def _generative_checks(model: Any, data: DataBundle, result: CheckResult, gen: torch.Generator,
                       y: torch.Tensor | None, cond: dict[str, torch.Tensor]) -> None:
    """prior, sample, generate and decode: the hooks that go from z (or nothing) to images."""
    info, have, n = data.info, result.capabilities, N_CHECK
    shape = (n, *info.shape)
    z = None
    if "prior" in have:
        z_ok = _attempt(result, "prior", lambda: _distribution(model.prior(), (), None, "prior()"))
        z = draw(model.prior(), n, gen) if z_ok else None
    real = z is not None and "decode" in have and _real_valued_decoder(model, z, cond)
    if "sample" in have:
        sample_gen = torch.Generator(device="cpu").manual_seed(0)
        _attempt(result, "sample", lambda: _images(sample_from(model, n, sample_gen), shape,
                                                   "sample(n)", real))
    if z is not None and "generate" in have:
        _attempt(result, "generate", lambda: _images(generate_from(model, z, y), shape,
                                                     "generate(z)", real))
    if z is not None and "decode" in have:
        _attempt(result, "decode", lambda: _distribution(model.decode(z, **cond), (n,),
                                                         tuple(info.shape), "decode(z)"))


def _inference_checks(model: Any, x: torch.Tensor, cond: dict[str, torch.Tensor],
                      gen: torch.Generator, result: CheckResult) -> None:
    """encode, classify, log_prob and log_importance_weights: the hooks that read images."""
    have, n = result.capabilities, N_CHECK
    if "encode" in have:
        _attempt(result, "encode", lambda: _distribution(model.encode(x, **cond), (n,), None,
                                                         "encode(x)"))
    if "classify" in have:
        _attempt(result, "classify", lambda: _distribution(model.classify(x), (n,), None,
                                                           "classify(x)"))
    if "exact" in have:
        def exact() -> str:
            lp = model.log_prob(x, **cond)
            if tuple(lp.shape) != (n,) or not torch.isfinite(lp).all():
                raise GenbenchError(f"log_prob(x) must be finite, shape ({n},); got {tuple(lp.shape)}")
            return f"mean {float(lp.mean()):.4g} nats"
        _attempt(result, "log_prob", exact)
    if "importance" in have:
        def importance() -> str:
            lw = model.log_importance_weights(x, 3, generator=gen)
            if tuple(lw.shape) != (3, n) or not torch.isfinite(lw).all():
                raise GenbenchError(f"log_importance_weights(x, 3) must be finite, shape (3, {n}); "
                                    f"got {tuple(lw.shape)}")
            return f"(3, {n}), mean {float(lw.mean()):.4g}"
        _attempt(result, "log_importance_weights", importance)


def _no_outside(name: str) -> None:
    """A run folder of outside samples given for a model name: nothing to check, say so."""
    from genbench.loading import refuse_outside_folder

    refuse_outside_folder(name, "check", "`genbench check MODEL` smoke-checks a genbench model "
                          "or plugin (`genbench list models`)")


def check_model(name: str, *, dataset: str = "synthetic") -> CheckResult:
    """Build ``name`` on ``dataset`` (smoke settings), train one step, check its capabilities.

    Unknown names are a GenbenchError; everything a model does wrong lands in ``problems``.
    """
    import genbench.metrics  # noqa: F401  (registers the metrics to list)

    _no_outside(name)
    entry = get_model(name)
    module = sys.modules.get(entry.cls.__module__)
    result = CheckResult(name, getattr(module, "__file__", None) or entry.source)
    data = load_dataset(DataRequest(dataset))
    cls = entry.cls
    _attempt(result, "presets", lambda: _check_presets(cls))
    holder: dict[str, Any] = {}

    def build() -> str:
        config, preset = resolve(cls.Config, getattr(cls, "presets", {}), PRESETS["smoke"], {})
        holder["model"], holder["preset"] = cls(config, data.info), preset
        count = sum(p.numel() for p in holder["model"].parameters())
        return f"{cls.__name__}({type(config).__name__}) on {data.info.name}, {count:,} parameters"

    if not _attempt(result, "build", build):
        return result
    model = holder["model"]
    result.capabilities = capabilities(model)
    result.derived = frozenset(c for c in DERIVED if c in result.capabilities
                               and not callable(getattr(model, c, None)))
    if callable(getattr(model, "on_evaluator", None)):
        from genbench.metrics.features import default_cache_dir, preset_extractor

        _attempt(result, "on_evaluator", lambda: model.on_evaluator(
            preset_extractor(data, holder["preset"], default_cache_dir())) or "ran")
    if callable(getattr(model, "on_train_start", None)):
        _attempt(result, "on_train_start", lambda: model.on_train_start(data) or "ran")
    model.train()
    stepped = _attempt(result, "training step", lambda: _train_step(model, data, result))
    if stepped and callable(getattr(model, "on_epoch_end", None)):
        _attempt(result, "on_epoch_end", lambda: model.on_epoch_end(0, result.stats) or "ran")
    if callable(getattr(model, "on_train_end", None)):
        with torch.no_grad():
            _attempt(result, "on_train_end",
                     lambda: model.on_train_end(data.eval_x("train")) or "ran")
    model.eval()
    with torch.no_grad():
        _capability_checks(model, data, result)
    result.metrics = [(m.name, missing_reason(m.needs, result.capabilities))
                      for m in METRICS.values()]
    return result


def format_check(result: CheckResult) -> str:
    """The check as lines for a terminal: checks, capabilities, metrics."""
    lines = [f"{result.model} ({result.source})"]
    lines += [f"  ok       {line}" for line in result.passed]
    lines += [f"  WARNING  {line}" for line in result.warnings]
    lines += [f"  PROBLEM  {line}" for line in result.problems]
    if result.capabilities:
        caps = [f"{c} (derived)" if c in result.derived else c for c in sorted(result.capabilities)]
        lines.append(f"capabilities: {', '.join(caps)}")
        missing = [h for h in HOOKS_SHOWN if h not in result.capabilities]
        if missing:
            lines.append(f"not exposed: {', '.join(missing)}")
    if result.metrics:
        lines.append("metrics:")
        width = max(len(n) for n, _ in result.metrics)
        lines += [f"  {n:<{width}}  " + ("will get" if r is None else f"n/a — {r}")
                  for n, r in result.metrics]
    lines.append("ready" if result.ok else f"{len(result.problems)} problem(s)")
    return "\n".join(lines)


# capabilities worth naming when absent (with the hook that gives each)
HOOKS_SHOWN = tuple(dict.fromkeys(h.capability for h in HOOK.values()
                                  if h.capability and h.capability != "train"))
