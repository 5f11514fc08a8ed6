"""The runner: device, seeding, the loop, checkpoints, resume, progress, failure isolation.

It knows nothing about any model beyond the contract (:mod:`genbench.contract`) and logs
through a :class:`Reporter`. Performance matters here because a benchmark suite that trains
slower than the tutorials loses its users, so the loop keeps to the device: batches are
index-gathers from a device tensor, per-step losses are summed on the device, and the host
synchronises only for the progress bar (a few times a second) and at the end of an epoch.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import torch

import genbench
from genbench import store
from genbench.contract import capabilities, optimizer_dict, sample_from, step_model
from genbench.data import DataBundle, DataRequest, load_dataset
from genbench.errors import Diverged, GenbenchError
from genbench.plugins import provenance
from genbench.presets import NO_GALLERIES_AT_EVALUATION, Preset, get_preset
from genbench.registry import get_model
from genbench.settings import resolve

if TYPE_CHECKING:
    from genbench.metrics.context import EvalProgress

CHECKPOINT_EVERY_S = 300.0  # also checkpoint mid-epoch this often (long epochs)
# the progress bar's losses: a model's "loss", or the two sides of an adversarial game
PROGRESS_LOSSES = ("loss", "g_loss", "d_loss")


class Reporter(Protocol):
    """Where the runner says what it is doing (the CLI's rich progress bar, a worker's
    progress file, or nothing): training through start/advance/stop, then the evaluation
    phase, whose progress goes to what :meth:`evaluation` returns (None: not shown)."""

    def start(self, title: str, total_steps: int, done_steps: int) -> None: ...
    def advance(self, steps: int, images: int, losses: Mapping[str, float]) -> None: ...
    def note(self, message: str) -> None: ...
    def stop(self) -> None: ...
    def evaluation(self, title: str) -> EvalProgress | None: ...


class SilentReporter:
    def start(self, title: str, total_steps: int, done_steps: int) -> None: ...
    def advance(self, steps: int, images: int, losses: Mapping[str, float]) -> None: ...
    def note(self, message: str) -> None: ...
    def stop(self) -> None: ...

    def evaluation(self, title: str) -> EvalProgress | None:
        return None


@dataclass(frozen=True)
class RunSpec:
    """One (model, dataset, seed) job, as the command line describes it."""

    model: str
    dataset: str = "mnist"
    variant: str | None = None
    preset: str = "quick"
    seed: int = 0
    epochs: int | None = None
    overrides: Mapping[str, str] = field(default_factory=dict)
    device: str = "auto"
    results: Path = Path("results")
    data_dir: str | None = None
    metrics: tuple[str, ...] = ()
    force: bool = False
    command: str = ""
    log: tuple[str, ...] = ()  # "tensorboard": events under <run_dir>/tensorboard (genbench.running.tblog)


@dataclass
class RunOutcome:
    status: str  # finished | skipped | failed | interrupted
    run_dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GenbenchError("--device cuda: no CUDA device is visible here; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise GenbenchError(f"unknown --device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


def versions() -> dict[str, str]:
    return {"genbench": genbench.__version__, "torch": torch.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


@dataclass
class Plan:
    """Everything resolved for one run before anything is written."""

    spec: RunSpec
    model_cls: type
    model_config: Any
    preset: Preset
    data: DataBundle
    device: torch.device
    run_dir: Path
    logger: Any = None  # a genbench.running.tblog.TensorBoardLogger while the run executes (--log)

    def config_json(self) -> dict[str, Any]:
        info = self.data.info
        return {
            "model": self.spec.model,
            "model_config": dataclasses.asdict(self.model_config),
            "preset": dataclasses.asdict(self.preset),
            "dataset": {"name": info.name, "requested": self.spec.dataset,
                        "variant": info.variant, "shape": list(info.shape),
                        "splits": info.splits, "observation": info.observation,
                        "num_classes": info.num_classes, "num_attributes": info.num_attributes,
                        "source": self.data.source, "data_dir": self.spec.data_dir,
                        "notes": self.data.notes},
            "seed": self.spec.seed,
            "overrides": dict(self.spec.overrides),
            "device": str(self.device),
            "versions": versions(),
            "command": self.spec.command,
            "capabilities": sorted(capabilities(self.model_cls)),
            **({"plugins": source} if (source := provenance(self.spec.model)) else {}),
            **report_declarations(self.model_cls, get_model(self.spec.model).description),
        }


def report_declarations(cls: type, description: str = "") -> dict[str, Any]:
    """What the report needs to know of the model class, kept in config.json so that it
    reads the store alone: its registered one-line description (a plugin's too), whether it
    is conditional (log p(x|y), marked †), and a reference row's ``reference_row`` note with
    the keys it ``games`` (the fooling generator)."""
    out: dict[str, Any] = {"conditional_model": bool(getattr(cls, "conditional", False))}
    if description:
        out["model_description"] = description
    note = getattr(cls, "reference_row", None)
    if isinstance(note, str):
        out |= {"reference_row": note, "games": [str(k) for k in getattr(cls, "games", ())]}
    return out


def plan_run(spec: RunSpec, data: DataBundle | None = None) -> Plan:
    """Resolve model, settings and data; name the run folder. Writes nothing."""
    entry = get_model(spec.model)
    if spec.log:
        from genbench.running.loggers import check

        check(spec.log)  # an unknown logger or a missing package fails before any training
    preset = get_preset(spec.preset)
    config, preset = resolve(entry.cls.Config, getattr(entry.cls, "presets", {}), preset,
                             spec.overrides, spec.epochs)
    device = resolve_device(spec.device)
    if data is None:
        data = load_dataset(DataRequest(spec.dataset, spec.variant, spec.data_dir, str(device)))
    data = data.subset_train(preset.max_train)
    settings = dataclasses.asdict(preset)
    if settings.get("feature_weights") is None:  # added later: unset, it moves no run folder
        settings.pop("feature_weights", None)
    if settings.get("hmc_persistence") == 0.0:  # added later: Wu et al.'s HMC, as before it
        settings.pop("hmc_persistence", None)
    identity = {"model": spec.model, "config": dataclasses.asdict(config),
                "preset": settings, "dataset": data.info.name,
                "variant": data.info.variant, "splits": data.info.splits}
    rid = store.run_id(preset.name, data.info.variant, spec.seed, identity)
    folder = store.run_dir(spec.results, data.info.name, spec.model, rid)
    from genbench.loading import refuse_beside_outside

    refuse_beside_outside(folder.parent, spec.model)  # a label of `genbench score`'s, taken
    return Plan(spec, entry.cls, config, preset, data, device, folder)


def execute(plan: Plan, reporter: Reporter | None = None) -> RunOutcome:
    """Train (or resume) and evaluate one run; failures are recorded, not raised.

    KeyboardInterrupt is saved as a resumable checkpoint and re-raised so the caller stops.
    """
    reporter = reporter or SilentReporter()
    folder = plan.run_dir
    # --force reruns whatever is there: even a metrics.json the schema refuses (its advice)
    existing = {} if plan.spec.force else store.read_metrics(folder)
    if existing.get("status") == "finished" and not plan.spec.force:
        return RunOutcome("skipped", folder, existing,
                          f"already finished: {folder} (use --force to rerun)")
    with store.locked(folder):
        if plan.spec.force:
            _clear(folder)
        store.write_json(folder / store.CONFIG, plan.config_json())
        store.update_metrics(folder, {"status": "running"})
        try:
            return _train_and_evaluate(plan, reporter)
        except KeyboardInterrupt:
            store.update_metrics(folder, {"status": "interrupted"})
            raise
        except Diverged as err:
            return _fail(folder, f"diverged: {err}")
        except GenbenchError as err:
            return _fail(folder, str(err))
        except Exception as err:  # a plugin's bug must not cost the other runs
            (folder / "error.log").write_text(traceback.format_exc())
            return _fail(folder, f"{type(err).__name__}: {err} (traceback in {folder / 'error.log'})")
        finally:
            reporter.stop()
            if plan.logger is not None:
                plan.logger.close()
                plan.logger = None


def _clear(folder: Path) -> None:
    for name in (store.METRICS, store.HISTORY, store.CHECKPOINT, "error.log"):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "samples", ignore_errors=True)


def _fail(folder: Path, reason: str) -> RunOutcome:
    metrics = store.update_metrics(folder, {"status": "failed", "reason": reason})
    return RunOutcome("failed", folder, metrics, reason)


def build_model(plan: Plan) -> torch.nn.Module:
    torch.manual_seed(plan.spec.seed)  # parameter initialisation is part of the seed
    return plan.model_cls(plan.model_config, plan.data.info).to(plan.device)


@dataclass
class Progress:
    """Where training stands; all of it goes into the checkpoint."""

    epoch: int = 0  # the epoch in progress (or next to run)
    step: int = 0  # the next step within it
    sums: dict[str, float] = field(default_factory=dict)  # this epoch's per-step stat sums
    steps_done: int = 0  # steps summed in ``sums``
    seconds: float = 0.0  # training seconds spent in this epoch so far
    history: list[dict[str, float]] = field(default_factory=list)
    trained: bool = False


def _train_and_evaluate(plan: Plan, reporter: Reporter) -> RunOutcome:
    from genbench.running.evaluation import evaluate_model  # evaluation imports the metrics

    folder, spec = plan.run_dir, plan.spec
    if plan.device.type == "cpu":
        torch.set_flush_denormal(True)  # denormals slow CPU matmuls by orders of magnitude
    model = build_model(plan)
    optimizers = optimizer_dict(model.configure_optimizers())
    progress = load_checkpoint(folder, model, optimizers) or Progress()
    if spec.log:
        from genbench.running.loggers import open_loggers

        plan.logger = open_loggers(spec.log, folder)
    if progress.trained:
        reporter.note(f"resuming {folder}: training is done, resuming evaluation")
    elif progress.step or progress.epoch:
        reporter.note(f"resuming {folder} at epoch {progress.epoch + 1}, step {progress.step}")
    if not progress.trained:
        _train(plan, model, optimizers, progress, reporter)
    model.eval()
    save_images(plan, model, folder)
    reporter.note(f"evaluating {spec.model} ({plan.preset.name} preset)")
    start = time.perf_counter()
    watch = reporter.evaluation(f"{spec.model} seed {spec.seed}")
    if plan.logger is not None:  # evaluation progress as TensorBoard scalars too
        watch = plan.logger.watch(watch)
    try:
        values, na = evaluate_model(model, plan.data, plan.preset, seed=spec.seed, device=plan.device,
                                    names=spec.metrics, run_dir=folder, results_root=spec.results,
                                    progress=watch)
    finally:
        if watch is not None:
            watch.stop()
    summary = {"status": "finished", "epochs": len(progress.history),
               "train_seconds": round(sum(r["seconds"] for r in progress.history), 2),
               "eval_seconds": round(time.perf_counter() - start, 2), **values,
               "not_applicable": na}
    if plan.logger is not None:
        plan.logger.final(plan.config_json(), values, step=len(progress.history))
    recorded = store.update_metrics(folder, summary)
    if plan.preset.name not in NO_GALLERIES_AT_EVALUATION:  # the report places what it draws
        from genbench.galleries.stored import draw_at_evaluation
        from genbench.loading import LoadedRun

        draw_at_evaluation(folder, LoadedRun(model, plan.data, plan.config_json(), plan.preset,
                                             spec.seed), reporter.note)
    return RunOutcome("finished", folder, recorded)


def _train(plan: Plan, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
           progress: Progress, reporter: Reporter) -> None:
    """Training with the model's hooks around the loop, checkpointed as trained at the end."""
    with deferred_sigint():  # Ctrl-C lands between steps, never inside one
        if callable(getattr(model, "on_evaluator", None)):  # the network IS and modes read
            from genbench.metrics.features import default_cache_dir, preset_extractor

            model.on_evaluator(preset_extractor(plan.data, plan.preset, default_cache_dir()))
        if callable(getattr(model, "on_train_start", None)):
            model.on_train_start(plan.data)
        train_loop(plan, model, optimizers, progress, reporter)
        reporter.stop()
        if callable(getattr(model, "on_train_end", None)):
            with torch.no_grad():
                model.on_train_end(plan.data.eval_x("train"))
        progress.trained = True
        save_checkpoint(plan.run_dir, model, optimizers, progress)


def train_loop(plan: Plan, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
               progress: Progress, reporter: Reporter) -> None:
    data, preset, seed = plan.data, plan.preset, plan.spec.seed
    steps = data.steps_per_epoch(preset.batch_size)
    title = f"{plan.spec.model} · {data.info.name} · seed {seed}"
    reporter.start(title, steps * preset.epochs, progress.epoch * steps + progress.step)
    while progress.epoch < preset.epochs:
        model.train()
        run_epoch(plan, model, optimizers, progress, reporter, steps)
        row = end_epoch(plan, model, progress)
        if plan.logger is not None:
            plan.logger.epoch(row, plan.run_dir / "samples" / f"epoch_{progress.epoch + 1:03d}.png")
        progress.history.append(row)
        store.write_history(plan.run_dir / store.HISTORY, progress.history)
        progress.epoch, progress.step, progress.sums, progress.steps_done = progress.epoch + 1, 0, {}, 0
        progress.seconds = 0.0
        save_checkpoint(plan.run_dir, model, optimizers, progress)
        interrupt_point()  # a Ctrl-C during the epoch's end: the checkpoint above is exact


def run_epoch(plan: Plan, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
              progress: Progress, reporter: Reporter, steps: int) -> None:
    """Steps of one epoch from ``progress.step``; on Ctrl-C saves where it stands."""
    data, preset = plan.data, plan.preset
    sums: dict[str, torch.Tensor] = {}
    # sums saved before (a resume, a mid-epoch save) go on in the same dtype, so the
    # resumed epoch's means are bit-identical to an uninterrupted epoch's
    carried = dict(progress.sums)
    started = last_report = last_save = time.perf_counter()
    pending_steps = pending_images = 0
    logged: list[dict[str, torch.Tensor]] = []  # steps' losses not yet handed to plan.logger

    def log_steps() -> None:
        nonlocal logged
        if plan.logger is not None and logged:
            plan.logger.steps(progress.epoch * steps + progress.step - len(logged) + 1, logged)
        logged = []

    def fold() -> None:  # copy the device sums into progress (a host sync)
        for k, v in sums.items():
            progress.sums[k] = float(v)

    try:
        for batch in data.train_batches(preset.batch_size, seed=plan.spec.seed,
                                        epoch=progress.epoch, start_step=progress.step):
            stats = step_model(model, batch, optimizers)
            if plan.logger is not None:
                logged.append({k: v.detach().clone() for k, v in stats.items()})
            _accumulate(sums, carried, stats)
            progress.step += 1
            progress.steps_done += 1
            interrupt_point()  # the step is complete: a deferred Ctrl-C is honoured here
            pending_steps += 1
            pending_images += batch.x.shape[0]
            now = time.perf_counter()
            if now - last_report > 0.5 or progress.step == steps:
                shown = {k: float(stats[k]) for k in PROGRESS_LOSSES if k in stats}
                reporter.advance(pending_steps, pending_images, shown)
                log_steps()
                pending_steps = pending_images = 0
                last_report = now
                if now - last_save > CHECKPOINT_EVERY_S:
                    fold()
                    progress.seconds += now - started
                    started = last_save = now
                    save_checkpoint(plan.run_dir, model, optimizers, progress)
    except KeyboardInterrupt:
        fold()
        log_steps()
        progress.seconds += time.perf_counter() - started
        save_checkpoint(plan.run_dir, model, optimizers, progress)
        reporter.note(f"interrupted: saved {plan.run_dir / store.CHECKPOINT}; "
                      "run the same command again to resume")
        raise
    log_steps()
    fold()
    progress.seconds += time.perf_counter() - started



def _accumulate(sums: dict[str, torch.Tensor], carried: Mapping[str, float],
                stats: Mapping[str, torch.Tensor]) -> None:
    """Add one step's losses to the epoch's sums on the device (no host sync per step). A sum
    carried over from a resume starts from its saved value in the step's dtype, so the
    resumed epoch's means are bit-identical to an uninterrupted epoch's."""
    for k, v in stats.items():
        if k in sums:
            sums[k] = sums[k] + v
        elif k in carried:
            sums[k] = torch.tensor(carried[k], dtype=v.dtype, device=v.device) + v.detach()
        else:
            sums[k] = v.detach().clone()


# -- Ctrl-C between steps -------------------------------------------------------------
_pending_sigint = [False]


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Within the block a SIGINT only sets a flag; :func:`interrupt_point` raises the
    KeyboardInterrupt where the state is whole (after a step and its counters), so the
    checkpoint saved on Ctrl-C never holds a model stepped past its step counter.

    Only in the main thread (elsewhere signals cannot be caught and this does nothing), and
    never where SIGINT is ignored (``nohup``): then Ctrl-C keeps doing nothing. The previous
    handler is restored on exit; a SIGINT still pending then is handed to it.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous == signal.SIG_IGN:  # started ignoring Ctrl-C (nohup, a batch system): keep it so
        yield
        return
    outer = _pending_sigint[0]
    _pending_sigint[0] = False

    def handler(signum: int, frame: Any) -> None:
        _pending_sigint[0] = True

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        pending, _pending_sigint[0] = _pending_sigint[0], outer
    if pending:
        if callable(previous) and previous is not signal.default_int_handler:
            previous(signal.SIGINT, None)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt


def interrupt_point() -> None:
    """Raise KeyboardInterrupt here if a Ctrl-C arrived in a :func:`deferred_sigint` block."""
    if _pending_sigint[0]:
        _pending_sigint[0] = False
        raise KeyboardInterrupt


def end_epoch(plan: Plan, model: torch.nn.Module, progress: Progress) -> dict[str, float]:
    """The epoch's history row; divergence checks; the fixed-noise sample grid."""
    n = max(progress.steps_done, 1)
    means = {k: v / n for k, v in progress.sums.items()}
    bad = [k for k, v in means.items() if not math.isfinite(v)]
    if bad:
        raise Diverged(f"non-finite {', '.join(bad)} in epoch {progress.epoch + 1}")
    images = len(plan.data.train)
    row = {"epoch": progress.epoch + 1, "seconds": round(progress.seconds, 3),
           "images_per_s": round(images / max(progress.seconds, 1e-9), 1), **means}
    if callable(getattr(model, "on_epoch_end", None)):
        model.on_epoch_end(progress.epoch, means)
    if "sample" in capabilities(model):
        save_epoch_grid(plan, model, progress.epoch)
    return row


def fixed_noise_generator(plan: Plan) -> torch.Generator:
    gen = torch.Generator(device=plan.device)
    gen.manual_seed(10_000 + plan.spec.seed)
    return gen


@torch.no_grad()
def save_epoch_grid(plan: Plan, model: torch.nn.Module, epoch: int) -> None:
    """64 samples from the same noise every epoch, so a user can watch training."""
    from genbench.images import save_grid

    was_training = model.training
    model.eval()
    rng = torch.get_rng_state()  # sampling must not perturb the training stream
    x = sample_from(model, 64, fixed_noise_generator(plan))
    torch.set_rng_state(rng)
    save_grid(x, plan.run_dir / "samples" / f"epoch_{epoch + 1:03d}.png", nrow=8)
    model.train(was_training)


@torch.no_grad()
def save_images(plan: Plan, model: torch.nn.Module, folder: Path) -> None:
    from genbench.images import save_grid, save_reconstructions

    have = capabilities(model)
    if "sample" in have:
        save_grid(sample_from(model, 64, fixed_noise_generator(plan)), folder / "samples.png")
    if {"encode", "generate"} <= have:
        x = plan.data.eval_x("test", 32)
        y = plan.data.eval_y("test", 32)
        save_reconstructions(model, x, y, folder / "reconstructions.png")


# -- checkpoints ----------------------------------------------------------------------
def save_checkpoint(folder: Path, model: torch.nn.Module,
                    optimizers: Mapping[str, torch.optim.Optimizer], progress: Progress) -> None:
    state = {
        "model": model.state_dict(),
        "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
        "progress": dataclasses.asdict(progress),
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    store.save_torch(folder / store.CHECKPOINT, state)


def load_checkpoint(folder: Path, model: torch.nn.Module,
                    optimizers: Mapping[str, torch.optim.Optimizer]) -> Progress | None:
    path = folder / store.CHECKPOINT
    if not path.exists():
        return None
    state = store.load_torch(path, map_location=next(iter(model.state_dict().values())).device,
                             keys=("model", "optimizers", "progress", "rng_cpu"))
    try:
        model.load_state_dict(state["model"])
        for k, opt in optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
    except (RuntimeError, KeyError, ValueError) as err:  # saved by another version of the model
        raise GenbenchError(f"{path} does not fit this model ({str(err).strip().splitlines()[0][:160]}); "
                            "rerun with --force") from None
    torch.set_rng_state(state["rng_cpu"].cpu())
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])
    return Progress(**state["progress"])

