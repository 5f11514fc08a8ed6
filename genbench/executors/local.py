"""``--executor local``: the runs one after another in this process, each with a progress
bar; a run held by another process is skipped as busy, and one failure does not stop the
others."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from genbench.executors.base import LocalOptions, Sharder
from genbench.running.display import RichReporter
from genbench.running.training import Plan, RunOutcome, execute
from genbench.store import Busy


class LocalExecutor:
    name = "local"
    options = LocalOptions

    def check(self, opts: LocalOptions) -> None: ...

    def start(self, opts: LocalOptions) -> None: ...

    def run(self, plans: list[Plan], opts: LocalOptions, console: Console, results: Path
            ) -> list[RunOutcome]:
        return [_run_one(plan, RichReporter(console), console) for plan in plans]

    def sharder(self, opts: LocalOptions, run_dir: Path, device: str, data_dir: str | None
                ) -> Sharder | None:
        return None


def _run_one(plan: Plan, reporter: RichReporter, console: Console) -> RunOutcome:
    try:
        outcome = execute(plan, reporter)
    except Busy as err:  # another process holds this run: skip it, run the others
        outcome = RunOutcome("busy", plan.run_dir, {}, str(err))
        console.print(f"[bold yellow]{plan.spec.model} seed {plan.spec.seed} skipped "
                      f"(busy):[/] {err}", highlight=False, soft_wrap=True)
    if outcome.status == "skipped":
        console.print(f"[dim]{outcome.message}[/]", highlight=False)
    elif outcome.status == "failed":
        console.print(f"[bold red]{plan.spec.model} seed {plan.spec.seed} failed:[/] "
                      f"{outcome.message}", highlight=False)
    return outcome
