"""What the CLI shows while genbench works: training (loss, images/s, time left) and
evaluation (which metric, how far in images, AIS steps or samples, time left).

In a terminal both are rich progress bars redrawn in place. When the output is not a
terminal (CI, a log file, a cluster job) they print plain lines instead: one when a metric
starts and ends, and one every ``interval`` seconds (5 by default) while it runs.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from genbench.metrics.context import EvalProgress

PLAIN_INTERVAL_S = 5.0  # seconds between plain progress lines
WIDE = 110  # terminal columns from which an evaluation bar also shows its unit and elapsed time


def _clock(seconds: float) -> str:
    s = int(round(max(seconds, 0.0)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _left(elapsed: float, done: float, total: float) -> str:
    if done <= 0 or total <= 0:
        return "time left unknown"
    return f"~{_clock(elapsed * (total - done) / done)} left"


class RichReporter:
    """The training progress (a :class:`genbench.running.training.Reporter`) and, through
    :meth:`evaluation`, the evaluation display that follows it."""

    def __init__(self, console: Console, interval: float = PLAIN_INTERVAL_S) -> None:
        self.console = console
        self.interval = interval
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self._images = 0
        self._t0 = 0.0
        self._title = ""
        self._last_line = 0.0
        self._first = 0  # the step this process started at (resume)

    @property
    def plain(self) -> bool:
        return not self.console.is_terminal

    def start(self, title: str, total_steps: int, done_steps: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"), TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=self.console, transient=False, disable=self.plain,
        )
        self.progress.start()
        self._images, self._t0 = 0, time.perf_counter()
        self._title, self._last_line, self._first = title, self._t0, done_steps
        self.task = self.progress.add_task(title, total=total_steps, completed=done_steps,
                                           loss="loss …", ips="…")
        if self.plain:
            self.note(f"training {title}: {total_steps} steps"
                      + (f", resuming at step {done_steps}" if done_steps else ""))

    def advance(self, steps: int, images: int, losses: Mapping[str, float]) -> None:
        """``losses``: the step's {"loss": ...}, or a GAN's {"g_loss": ..., "d_loss": ...}
        shown short ("loss 1.23", "g 2.1 d 0.6") so the bar keeps its width on 80 columns."""
        if self.progress is None or self.task is None:
            return
        self._images += images
        ips = self._images / max(time.perf_counter() - self._t0, 1e-9)
        shown = " ".join(f"{k.removesuffix('_loss')} {v:.3g}" for k, v in losses.items()) or "loss –"
        self.progress.update(self.task, advance=steps, loss=shown, ips=f"{ips:,.0f}")
        now = time.perf_counter()
        if self.plain and now - self._last_line >= self.interval:
            self._last_line = now
            self.note(self._training_line())

    def _training_line(self) -> str:
        assert self.progress is not None and self.task is not None
        task = self.progress.tasks[0]
        total = task.total or 0
        pct = f" ({100 * task.completed / total:.0f}%)" if total else ""
        elapsed = time.perf_counter() - self._t0
        return (f"  {self._title}: step {task.completed:.0f}/{total:.0f}{pct}, "
                f"{task.fields['loss']}, {task.fields['ips']} img/s, {_clock(elapsed)} elapsed, "
                f"{_left(elapsed, task.completed - self._first, total - self._first)}")

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.progress is not None:
            if self.plain and self.task is not None:
                self.note(self._training_line().replace(", ~0:00:00 left", ""))
            self.progress.stop()
            self.progress = None

    def evaluation(self, title: str = "") -> EvalDisplay:
        """The display for the evaluation that follows training."""
        return EvalDisplay(self.console, title=title, interval=self.interval)


class EvalDisplay(EvalProgress):
    """Evaluation progress: a bar per metric in a terminal, plain lines elsewhere.

    Every metric is named when it starts and when it ends (with how much it did and how
    long it took); in between, a bar shows how far it is and the time left (in a
    terminal), or a line says so every ``interval`` seconds (elsewhere).
    """

    def __init__(self, console: Console, title: str = "", interval: float = PLAIN_INTERVAL_S,
                 plain: bool | None = None) -> None:
        self.console = console
        self.title = title
        self.interval = interval
        self.plain = (not console.is_terminal) if plain is None else plain
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}
        self._state: dict[str, dict] = {}  # metric -> unit, done, total, t0, last line

    def _prefix(self) -> str:
        return f"  {self.title}: " if self.title else "  "

    def _bar(self) -> Progress:
        if self.progress is None:
            self.progress = Progress(*self.columns(self.console.width), console=self.console,
                                     transient=False)
            self.progress.start()
        return self.progress

    @staticmethod
    def columns(width: int) -> list:
        """The bar's columns for a terminal ``width``: the count and the time left always
        whole; below ``WIDE`` columns the unit text and the elapsed time go first (rich would
        otherwise cut every column to "500…" and "0:0…")."""
        keep = {"no_wrap": True, "overflow": "ignore"}
        cols = [TextColumn("  [bold]{task.description}", table_column=Column(**keep)),
                BarColumn(bar_width=24 if width >= WIDE else 10),
                MofNCompleteColumn(table_column=Column(**keep))]
        if width >= WIDE:
            cols += [TextColumn("{task.fields[unit]}", table_column=Column(no_wrap=True,
                                                                            overflow="ellipsis")),
                     TimeElapsedColumn(table_column=Column(**keep))]
        return cols + [TextColumn("left"), TimeRemainingColumn(table_column=Column(**keep))]

    def start(self, metric: str) -> None:
        now = time.perf_counter()
        self._state[metric] = {"unit": "", "done": 0, "total": 0, "t0": now, "begun": now,
                               "last": now, "phases": {}}
        if self.plain:
            self.console.print(f"{self._prefix()}{metric}: started", highlight=False, soft_wrap=True)
        else:
            self.tasks[metric] = self._bar().add_task(metric, total=None, unit="")

    def update(self, metric: str, done: int, total: int, unit: str) -> None:
        st = self._state.get(metric)
        if st is None:
            self.start(metric)
            st = self._state[metric]
        now = time.perf_counter()
        if unit != st["unit"]:  # a new phase (e.g. choosing the noise, then AIS): time anew
            st.update(unit=unit, t0=now, passes=1)
            if not self.plain:
                self._bar().reset(self.tasks[metric], total=total, completed=0, unit=unit)
        elif done < st["done"]:  # the same loop again (a longer AIS schedule, a noise search)
            st.update(t0=now, passes=st.get("passes", 1) + 1)
            if not self.plain:
                self._bar().reset(self.tasks[metric], total=total, completed=0,
                                  unit=f"{unit}, pass {st['passes']}")
        st.update(done=done, total=total)
        st["phases"][unit] = (done, total, st.get("passes", 1))
        if self.plain:
            if now - st["last"] >= self.interval:
                st["last"] = now
                self.console.print(f"{self._prefix()}{metric}: {self._amount(st)}, "
                                   f"{_clock(now - st['begun'])} elapsed, "
                                   f"{_left(now - st['t0'], done, total)}"
                                   + (" in this pass" if st.get("passes", 1) > 1 else ""),
                                   highlight=False, soft_wrap=True)
        else:
            self._bar().update(self.tasks[metric], total=total, completed=done)

    @staticmethod
    def _amount(st: dict) -> str:
        total = st["total"]
        pct = f" ({100 * st['done'] / total:.0f}%)" if total else ""
        again = f", pass {st['passes']}" if st.get("passes", 1) > 1 else ""
        return f"{st['done']}/{total} {st['unit']}{pct}{again}"

    def end(self, metric: str, seconds: float, failed: str | None = None) -> None:
        st = self._state.pop(metric, None) or {"unit": "", "done": 0, "total": 0, "phases": {}}
        did = "".join(f"{d}/{t} {unit}" + (f" ({k} passes)" if k > 1 else "") + ", "
                      for unit, (d, t, k) in st["phases"].items())
        outcome = f"n/a ({failed})" if failed else f"{did}done in {seconds:.1f} s"
        if self.plain:
            self.console.print(f"{self._prefix()}{metric}: {outcome}", highlight=False, soft_wrap=True)
            return
        bar = self._bar()
        task = self.tasks.pop(metric, None)
        if task is None:  # not started: not applicable to this model
            task = bar.add_task(metric, total=None, unit="")
        if failed:
            bar.update(task, description=f"{metric} [dim]n/a[/]", total=1, completed=1)
        else:
            total = st["total"] or 1
            bar.update(task, total=total, completed=total)
        bar.stop_task(task)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
