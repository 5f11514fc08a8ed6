"""The rich progress bar the CLI hands the runner: loss, images/s, time left."""

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
            TextColumn("{task.fields[loss]}"), TextColumn("{task.fields[ips]} img/s"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            console=self.console, transient=False,
        )
        self.progress.start()
        self._images, self._t0 = 0, time.perf_counter()
        self.task = self.progress.add_task(title, total=total_steps, completed=done_steps,
                                           loss="loss …", ips="…")

    def advance(self, steps: int, images: int, losses: Mapping[str, float]) -> None:
        """``losses``: the step's {"loss": ...}, or a GAN's {"g_loss": ..., "d_loss": ...}
        shown short ("loss 1.23", "g 2.1 d 0.6") so the bar keeps its width on 80 columns."""
        if self.progress is None or self.task is None:
            return
        self._images += images
        ips = self._images / max(time.perf_counter() - self._t0, 1e-9)
        shown = " ".join(f"{k.removesuffix('_loss')} {v:.3g}" for k, v in losses.items()) or "loss –"
        self.progress.update(self.task, advance=steps, loss=shown, ips=f"{ips:,.0f}")

    def note(self, message: str) -> None:
        self.console.print(message, highlight=False)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
