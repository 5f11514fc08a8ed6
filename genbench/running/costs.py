"""``genbench run ... --plan``: what each run would cost, without running it.

FLOPs are counted, not guessed: one training step on one batch and one decoder/encoder
pass on one image of the run's own model and data go through
``torch.utils.flop_counter.FlopCounterMode``, and are multiplied by the images and passes
the preset asks for (training: train images x epochs; IWAE: test images x k decoder passes;
AIS: images x chains x distributions x leapfrog steps x a forward and a backward pass;
BDMC: the same forward and reverse). Seconds divide those FLOPs by a calibration measured
on this machine (a timed float32 matmul with the run's thread count), so they are a floor:
small models run well below a big matmul's rate (the calibration ratio printed beside).
AIS doubles its schedule until converged (with a pilot, runs once at the schedule it
chooses); the range is from ``ais_steps`` to the worst case (every doubling up to
``ais_max_steps``; with a pilot, the longest alone).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from rich.console import Console
from rich.table import Table

from genbench.metrics.certify import pilot_schedules
from genbench.running.training import Plan

if TYPE_CHECKING:
    from genbench.contract import Batch
    from genbench.data import DataBundle
    from genbench.presets import Preset

BACKWARD = 2.0  # a backward pass costs about twice its forward


def calibrate(threads: int | None = None, n: int = 512, repeats: int = 5,
              device: torch.device | str = "cpu") -> float:
    """Sustained float32 matmul FLOP/s of this machine's ``device`` (CPU: at ``threads``)."""
    device = torch.device(device)
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        n = max(n, 4096)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    try:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        a @ b  # warm up
        sync()
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            sync()
            best = min(best, time.perf_counter() - t)
        return 2.0 * n**3 / best
    finally:
        torch.set_num_threads(old)


def _count(fn) -> float:  # noqa: ANN001
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@dataclass
class Cost:
    label: str
    params: int
    train: float  # FLOPs
    evals: dict[str, float]  # metric -> FLOPs (AIS: the first schedule)
    ais_worst: float  # AIS and BDMC FLOPs if every doubling runs

    @property
    def eval_total(self) -> float:
        return sum(self.evals.values())


def estimate(plan: Plan) -> Cost:
    """The FLOPs of one planned run (its model built on the CPU, nothing trained)."""
    torch.manual_seed(0)
    model = plan.model_cls(plan.model_config, plan.data.info)
    params = sum(p.numel() for p in model.parameters())
    p, data = plan.preset, plan.data
    batch = next(iter(data.train_batches(p.batch_size, seed=0, epoch=0)))
    per_image_train = _train_flops_per_image(model, batch, params)
    model.eval()
    enc, dec = _pass_flops(model, data, params)
    n_test = len(data.test) if p.n_eval is None else min(p.n_eval, len(data.test))
    evals = _eval_flops(p, _applicable(model, plan.spec.metrics or p.metrics), n_test, enc, dec)
    likelihood = sum(v for k, v in evals.items() if k.startswith(("ais", "bdmc")))
    if callable(getattr(model, "sample", None)) or callable(getattr(model, "generate", None)):
        evals["samples"] = p.n_quality * dec
    worst = likelihood * _worst_steps(p) / max(p.ais_steps, 1)
    train = per_image_train * len(data.train) * p.epochs
    s = plan.spec
    label = f"{s.model} {data.info.name}/{data.info.variant} seed {s.seed}"
    return Cost(label, params, train, evals, worst)


def _train_flops_per_image(model: torch.nn.Module, batch: Batch, params: int) -> float:
    """FLOPs of one training step per image, counted on one real batch; a model the counter
    cannot follow is charged three forward passes' worth (6 FLOPs per parameter)."""
    try:
        optimizers = model.configure_optimizers()
        optimizers = optimizers if isinstance(optimizers, dict) else {"opt": optimizers}

        def step() -> None:
            if getattr(model, "manual_optimization", False) or not callable(
                    getattr(model, "training_step", None)):
                model.training_step(batch, optimizers)
                return
            try:
                out = model.training_step(batch, optimizers)
            except TypeError:
                out = model.training_step(batch)
            loss = out.get("loss") if isinstance(out, dict) else None
            if loss is not None and loss.requires_grad:
                loss.backward()

        return _count(step) / batch.x.shape[0]
    except Exception:  # a model the counter cannot follow: 3 forward passes' worth
        return 6.0 * params


def _pass_flops(model: torch.nn.Module, data: DataBundle, params: int) -> tuple[float, float]:
    """FLOPs of one image through the encoder and through the generator, counted where the
    model has them (else 2 per parameter): what every evaluation is priced in."""
    from genbench.metrics.sampling import encode, generate

    x = data.eval_x("test", 1)
    y = data.eval_y("test", 1) if getattr(model, "conditional", False) else None
    dec = enc = 2.0 * params
    with torch.no_grad():
        if callable(getattr(model, "prior", None)) and callable(getattr(model, "generate", None)):
            z = model.prior().sample((1,))
            with contextlib.suppress(Exception):  # else the parameter-count estimate
                dec = _count(lambda: generate(model, z, y))
        if callable(getattr(model, "encode", None)):
            with contextlib.suppress(Exception):
                enc = _count(lambda: encode(model, x, y))
    return enc, dec


def _eval_flops(p: Preset, applies: set[str], n_test: int, enc: float, dec: float) -> dict[str, float]:
    """FLOPs of each likelihood evaluation that applies, at the preset's first AIS schedule;
    own and shared observation models are separate evaluations."""
    hmc = dec * (1 + BACKWARD)  # a leapfrog step: decoder forward and backward
    evals: dict[str, float] = {}
    if "elbo" in applies:
        evals["elbo"] = n_test * (enc + dec)
    ais_one = p.ais_n * p.ais_chains * p.ais_steps * p.hmc_leapfrog * hmc
    for name in applies:
        kind = name.removesuffix("_shared")
        if kind == "iwae":
            evals[name] = n_test * (enc + p.iwae_k * dec)
        elif kind == "ais":
            evals[name] = ais_one
        elif kind == "bdmc":
            evals[name] = 2 * p.bdmc_n / max(p.ais_n, 1) * ais_one
    return evals


def _worst_steps(p: Preset) -> int:
    """Distributions of every AIS run in the worst case the likelihood cost scales to: every
    doubling up to ``ais_max_steps``, pooled; with a pilot, the one run it may ask for at
    the longest doubling (the pilot's own looks, a few simulated images, are left out)."""
    worst_steps = p.ais_steps
    max_steps = getattr(p, "ais_max_steps", p.ais_steps)
    s = p.ais_steps
    while 2 * s <= max_steps:
        s *= 2
        worst_steps += s
    return s if pilot_schedules(getattr(p, "pilot_steps", 0), p.ais_steps) else worst_steps


def _applicable(model: torch.nn.Module, names: tuple[str, ...] = ()) -> set[str]:
    """The likelihood metrics (own and shared observation model) the run would evaluate:
    those asked for (default: the default ones) whose needs the model meets."""
    from genbench.contract import missing_reason
    from genbench.metrics.runner import model_capabilities
    from genbench.registry import METRICS

    have = model_capabilities(model)
    wanted = [n for n in names if n in METRICS] if names else [n for n, m in METRICS.items() if m.default]
    return {n for n in wanted if n.removesuffix("_shared") in ("elbo", "iwae", "ais", "bdmc")
            and missing_reason(METRICS[n].needs, have) is None}


def _flops(f: float) -> str:
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if f >= scale:
            return f"{f / scale:.3g} {unit}"
    return f"{f:.3g}"


def _secs(s: float) -> str:
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    if s < 172800:
        return f"{s / 3600:.3g} h"
    return f"{s / 86400:.3g} d"


def print_costs(plans: list[Plan], console: Console, threads: int | None = None) -> list[Cost]:
    device = plans[0].device if plans else torch.device("cpu")
    rate = calibrate(threads or torch.get_num_threads(), device=device)
    costs = [estimate(p) for p in plans]
    table = Table(title="estimated cost per run (nothing was run)", title_justify="left", padding=(0, 1))
    for col in ("run", "params", "train FLOP", "eval FLOP", "train", "eval", "eval max"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for c in costs:
        likelihood = sum(v for k, v in c.evals.items() if k.startswith(("ais", "bdmc")))
        worst = c.eval_total - likelihood + c.ais_worst
        table.add_row(c.label, f"{c.params:,}", _flops(c.train), _flops(c.eval_total),
                      _secs(c.train / rate), _secs(c.eval_total / rate), _secs(worst / rate))
    console.print(table)
    total = sum(c.train + c.eval_total for c in costs)
    console.print("eval max: AIS and BDMC if the schedule doubles up to ais_max_steps", style="dim")
    where = (f"{threads or torch.get_num_threads()} CPU thread(s)" if device.type == "cpu"
             else str(device))
    console.print(f"calibration: float32 matmul at {rate / 1e9:.3g} GFLOP/s on {where} of this "
                  f"machine; seconds are FLOPs / that "
                  f"rate, a floor (small layers run below it). All runs: {_flops(total)}FLOP, "
                  f"{_secs(total / rate)} on one such worker, /N on N.", highlight=False)
    return costs
