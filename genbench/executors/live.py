"""One live view of a sweep: a table of runs and an ETA, instead of interleaved progress bars.

The driver polls the run folders (``metrics.json`` and the task's ``.progress.json``), so
it works the same for Ray tasks on this machine and SLURM jobs on a shared filesystem.
In a terminal the table is redrawn in place (rich.live); otherwise (a log file, CI) a plain
line is printed when a run ends and a summary line every ``every`` seconds.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from genbench.executors.task import read_progress


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class SweepView:
    def __init__(self, run_dirs: list[Path], labels: list[str], console: Console, slots: int,
                 *, enabled: bool = True, every: float = 30.0) -> None:
        self.run_dirs, self.labels, self.console = [Path(p) for p in run_dirs], labels, console
        self.slots, self.enabled, self.every = max(1, slots), enabled, every
        self.outcomes: dict[int, Any] = {}
        self.t0 = time.time()
        self.live: Live | None = None
        self.last_line = time.time()
        self.last_draw = 0.0

    # -- state ----------------------------------------------------------------------
    def row(self, i: int) -> tuple[str, str, float | None]:
        """(state, detail, seconds left for this run or None)."""
        outcome = self.outcomes.get(i)
        if outcome is not None:
            if outcome.status == "failed":
                return "failed", outcome.message, 0.0
            if outcome.status in ("skipped", "busy"):  # finished earlier / held by another process
                return outcome.status, outcome.message, 0.0
            m = outcome.metrics
            return outcome.status, f"{_duration(m.get('train_seconds'))} training, " \
                f"{_duration(m.get('eval_seconds'))} evaluation", 0.0
        prog = read_progress(self.run_dirs[i])
        if not prog:
            return "queued", "", None
        phase = prog.get("phase", "starting")
        if phase == "training":
            steps, step = prog.get("steps") or 0, prog.get("step") or 0
            ips = prog.get("images_per_s")
            detail = (f"epoch {prog.get('epoch', '?')}/{prog.get('epochs', '?')}"
                      + (f", {ips:,.0f} img/s" if ips else "") + f" on {prog.get('host', '?')}")
            left = None
            started = prog.get("started")
            if started and steps and step:
                done_now = step - (prog.get("first_step") or 0)
                elapsed = time.time() - started
                left = elapsed * (steps - step) / max(done_now, 1) if done_now > 0 else None
            return "training", detail, left
        if phase == "evaluating":
            metric = prog.get("metric")
            done, total = prog.get("metric_done"), prog.get("metric_total")
            detail = f"evaluating {metric or '…'}" + (f" {done}/{total} {prog.get('metric_unit', '')}"
                                                      if done is not None and total else "")
            return "evaluating", detail.strip(), None
        return "starting", f"on {prog.get('host', '?')}", None

    def eta(self, rows: list[tuple[str, str, float | None]]) -> float | None:
        ended = [o for o in self.outcomes.values() if o.status == "finished"]
        per_run = None
        if ended:
            per_run = sum(float(o.metrics.get("train_seconds", 0)) + float(o.metrics.get("eval_seconds", 0))
                          for o in ended) / len(ended)
        work = 0.0
        for state, _, left in rows:
            if state in ("finished", "failed", "skipped", "busy"):
                continue
            if state == "training" and left is not None:
                work += left + (per_run * 0.2 if per_run else 0.0)
            elif per_run is None:
                return None
            else:
                work += per_run if state == "queued" else per_run / 2
        return work / self.slots

    def counts(self, rows: list[tuple[str, str, float | None]]) -> dict[str, int]:
        out: dict[str, int] = {}
        for state, _, _ in rows:
            out[state] = out.get(state, 0) + 1
        return out

    # -- drawing --------------------------------------------------------------------
    def table(self) -> Table:
        rows = [self.row(i) for i in range(len(self.run_dirs))]
        counts = ", ".join(f"{n} {s}" for s, n in self.counts(rows).items())
        title = (f"sweep: {counts}; elapsed {_duration(time.time() - self.t0)}, "
                 f"ETA {_duration(self.eta(rows))}")
        table = Table(title=title, title_justify="left", padding=(0, 1))
        for col in ("run", "state", "detail"):
            table.add_column(col, no_wrap=col != "detail", overflow="fold")
        style = {"failed": "red", "finished": "green", "skipped": "dim", "queued": "dim", "busy": "yellow"}
        for label, (state, detail, _) in zip(self.labels, rows, strict=True):
            table.add_row(label, f"[{style.get(state, 'bold')}]{state}[/]", detail)
        return table

    def summary_line(self) -> str:
        rows = [self.row(i) for i in range(len(self.run_dirs))]
        running = [f"{label}: {detail}" for label, (state, detail, _) in zip(self.labels, rows, strict=True)
                   if state in ("training", "evaluating", "starting")]
        counts = ", ".join(f"{n} {s}" for s, n in self.counts(rows).items())
        return (f"sweep: {counts}; ETA {_duration(self.eta(rows))}"
                + (f" | {'; '.join(running)}" if running else ""))

    def __enter__(self) -> SweepView:
        if self.enabled and self.console.is_terminal:
            self.live = Live(self.table(), console=self.console, refresh_per_second=2, transient=False)
            self.live.__enter__()
        elif self.enabled:
            self.console.print(self.summary_line(), highlight=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self.table())
            self.live.__exit__(*exc)
            self.live = None

    def refresh(self) -> None:
        if not self.enabled:
            return
        now = time.time()
        if self.live is not None:
            if now - self.last_draw > 0.5:
                self.live.update(self.table())
                self.last_draw = now
        elif now - self.last_line > self.every:
            self.console.print(self.summary_line(), highlight=False)
            self.last_line = now

    def finished(self, i: int, outcome: Any) -> None:
        self.outcomes[i] = outcome
        if self.enabled and self.live is None:
            mark = {"failed": "[red]failed[/]", "finished": "[green]finished[/]"}.get(outcome.status,
                                                                                   outcome.status)
            extra = f": {outcome.message}" if outcome.status == "failed" else ""
            self.console.print(f"{mark} {self.labels[i]} ({outcome.run_dir}){extra}", highlight=False)

