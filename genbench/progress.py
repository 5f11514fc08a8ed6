"""The rich progress bar the CLI hands the runner: loss, images/s, time left."""

from __future__ import annotations

import time

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


class RichReporter:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self._images = 0
        self._t0 = 0.0

    def start(self, title: str, total_steps: int, done_steps: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.progress.start()
        self._images, self._t0 = 0, time.perf_counter()
        self.task = self.progress.add_task(title, total=total_steps, completed=done_steps,
                                           loss="…", ips="…")

    def advance(self, steps: int, images: int, loss: float | None) -> None:
        if self.progress is None or self.task is None:
            return
        self._images += images
        ips = self._images / max(time.perf_counter() - self._t0, 1e-9)
        self.progress.update(self.task, advance=steps,
                             loss=f"{loss:.4g}" if loss is not None else "–", ips=f"{ips:,.0f}")

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
