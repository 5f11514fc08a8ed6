"""The progress bar shows a loss for every kind of model: a VAE's "loss", a GAN's two sides."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path

import pytest
from rich.console import Console

from genbench.display import RichReporter

pytestmark = pytest.mark.usefixtures("one_thread")


def shown(losses: Mapping[str, float]) -> str:
    reporter = RichReporter(Console(file=io.StringIO(), width=120))
    reporter.start("run", total_steps=10, done_steps=0)
    reporter.advance(1, 64, losses)
    assert reporter.progress is not None
    text = reporter.progress.tasks[0].fields["loss"]
    reporter.stop()
    return text


def test_bar_shows_the_loss_or_both_sides_of_a_gan() -> None:
    assert shown({"loss": 123.456}) == "loss 123"
    assert shown({"g_loss": 2.1234, "d_loss": 0.6}) == "g 2.12 d 0.6"
    assert shown({}) == "loss –"  # a model that reports none of them


class Recording:
    """A Reporter that keeps what the runner hands the progress bar."""

    def __init__(self) -> None:
        self.losses: list[Mapping[str, float]] = []

    def start(self, title: str, total_steps: int, done_steps: int) -> None: ...
    def note(self, message: str) -> None: ...
    def stop(self) -> None: ...
    def evaluation(self, title: str) -> None: ...

    def advance(self, steps: int, images: int, losses: Mapping[str, float]) -> None:
        self.losses.append(dict(losses))


@pytest.mark.parametrize("name, keys", [("vae", {"loss"}), ("dcgan", {"g_loss", "d_loss"})])
def test_runner_hands_the_bar_each_models_losses(name: str, keys: set[str], tmp_path: Path,
                                                 plugins_loaded) -> None:
    from genbench.data import DataRequest, load_dataset
    from genbench.training import RunSpec, execute, plan_run

    spec = RunSpec(model=name, dataset="synthetic", preset="smoke", seed=0, epochs=1,
                   results=tmp_path, device="cpu", metrics=("elbo",))
    recording = Recording()
    outcome = execute(plan_run(spec, load_dataset(DataRequest("synthetic"))), recording)
    assert outcome.status == "finished", outcome.message
    assert recording.losses and all(set(d) == keys for d in recording.losses)
    assert all(math.isfinite(v) for d in recording.losses for v in d.values())


# -- evaluation you can watch ---------------------------------------------------------

LOOPED = {"iwae": "images", "ais": "AIS steps", "bdmc": "AIS steps", "quality": "samples",
          "modes": "samples"}  # metrics with long loops, and the unit they count in


def test_a_smoke_runs_evaluation_names_each_metric_with_its_progress(tmp_path: Path,
                                                                     plugins_loaded) -> None:
    """Non-terminal output (a log file): every evaluated metric is named when it starts and
    ends, the long ones with how far they got; with a zero interval the periodic lines show
    counts below the total and the time left."""
    import re

    from genbench.data import DataRequest, load_dataset
    from genbench.display import RichReporter
    from genbench.training import RunSpec, execute, plan_run

    out = io.StringIO()
    console = Console(file=out, width=100)
    assert not console.is_terminal
    spec = RunSpec(model="vae", dataset="synthetic", preset="smoke", seed=0, results=tmp_path,
                   device="cpu", metrics=("elbo", "iwae", "ais", "bdmc", "quality"))
    outcome = execute(plan_run(spec, load_dataset(DataRequest("synthetic"))),
                      RichReporter(console, interval=0.0))
    assert outcome.status == "finished", outcome.message
    text = out.getvalue()
    assert "\x1b[" not in text and "\r" not in text  # plain lines, no redrawn bar
    evaluated = [k.removeprefix("_seconds_") for k in outcome.metrics if k.startswith("_seconds_")]
    assert set(evaluated) == {"elbo", "iwae", "ais", "bdmc", "quality"}
    for name in evaluated:
        assert f"vae seed 0: {name}: started" in text
        assert re.search(rf"vae seed 0: {name}: .*done in \d+\.\d s", text), name
        if name in LOOPED:  # the end line says how much was done, in the metric's unit
            unit = LOOPED[name]
            full = re.findall(rf"{name}: (?:[^,]*, )*?(\d+)/(\d+) {unit}.*done in", text)
            assert full and full[0][0] == full[0][1] and int(full[0][1]) > 0, (name, text)
            partial = re.findall(rf"{name}: (\d+)/(\d+) {unit}.*elapsed, ~\d:\d\d:\d\d left", text)
            assert any(int(d) < int(t) for d, t in partial), (name, text)
    n_eval = 64  # smoke preset
    assert f"iwae: {n_eval}/{n_eval} images" in text
    assert "quality: 256/256 samples" in text
    assert re.search(r"vae · synthetic · seed 0: step 8/8 \(100%\)", text) or "step" in text


def test_ais_progress_counts_every_step_over_image_batches(monkeypatch) -> None:
    """Batches of images run AIS one after another: the count rises by one per transition
    up to batches x (steps - 1), and the estimates are those of an unwatched run."""
    import torch
    from test_likelihood import GAUSS, PPCA

    from genbench.metrics import ais
    from genbench.metrics.bdmc import bdmc

    model = PPCA()
    x = model.data(6)
    kw = dict(chains=4, steps=20, hmc=ais.HMCConfig(leapfrog=3), seed=1)
    monkeypatch.setattr(ais, "ROW_FLOATS", 4 * 6 * 2)  # two images per batch: three batches
    seen: list[tuple[int, int]] = []
    watched = ais.ais_log_likelihood(model, GAUSS, x, progress=lambda d, t: seen.append((d, t)), **kw)
    plain = ais.ais_log_likelihood(model, GAUSS, x, **kw)
    torch.testing.assert_close(watched[0], plain[0], rtol=0, atol=0)
    assert seen == [(i, 3 * 19) for i in range(1, 3 * 19 + 1)]
    both: list[tuple[int, int]] = []
    bdmc(model, GAUSS, n=3, shape=model.shape, chains=2, steps=10, hmc=ais.HMCConfig(leapfrog=2),
         seed=0, progress=lambda d, t: both.append((d, t)))
    assert both == [(i, 18) for i in range(1, 19)]  # forward, then reverse


def test_iwae_and_sample_progress_reach_the_total() -> None:
    from test_likelihood import PPCA

    from genbench.metrics.iwae import iwae_bound

    model = PPCA()
    x = model.data(10)
    seen: list[tuple[int, int]] = []
    iwae_bound(model, x, k=8, seed=0, chunk=24, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]  # 24 // 8 = 3 images per group


def test_terminal_display_keeps_one_bar_per_metric_and_restarts_on_a_new_phase() -> None:
    from genbench.display import EvalDisplay

    display = EvalDisplay(Console(file=io.StringIO(), force_terminal=True, width=100))
    assert not display.plain
    display.start("ais")
    display.update("ais", 3, 10, "AIS steps choosing the noise")
    display.update("ais", 5, 40, "AIS steps")
    assert display.progress is not None
    task = display.progress.tasks[0]
    assert (task.description, task.completed, task.total, task.fields["unit"]) == (
        "ais", 5, 40, "AIS steps")
    display.end("ais", 1.0)
    display.start("bdmc")
    display.end("bdmc", 0.5, failed="no generator")
    assert [t.description for t in display.progress.tasks] == ["ais", "bdmc [dim]n/a[/]"]
    assert display.progress.tasks[0].completed == 40
    display.stop()


def test_plain_lines_count_passes_when_a_loop_starts_again() -> None:
    """A loop that runs again (AIS doubling its schedule, a noise search) is a new pass:
    the time left restarts and the lines say which pass; a metric asked for by name but
    not applicable is named with its reason."""
    from genbench.display import EvalDisplay

    out = io.StringIO()
    display = EvalDisplay(Console(file=out, width=200), interval=0.0)
    display.start("ais")
    for done in (10, 20, 5, 20, 40):
        display.update("ais", done, 20 if done <= 20 else 40, "AIS steps")
    display.end("ais", 2.0)
    display.end("iwae", 0.0, failed="no encoder")
    lines = out.getvalue().splitlines()
    assert "ais: 10/20 AIS steps (50%)," in lines[1] and "pass" not in lines[1]
    assert "ais: 5/20 AIS steps (25%), pass 2," in lines[3] and lines[3].endswith("left in this pass")
    assert "ais: 40/40 AIS steps (100%), pass 2" in lines[5]
    assert lines[6].endswith("ais: 40/40 AIS steps (2 passes), done in 2.0 s")
    assert lines[7].endswith("iwae: n/a (no encoder)")


def test_eval_bars_keep_count_and_time_left_at_80_columns() -> None:
    """At 80 columns the unit text goes first: the count and the time left stay whole
    (rich used to cut them to "500…" and "0:0…")."""
    import io
    import re

    from rich.console import Console

    from genbench.display import EvalDisplay

    for width in (80, 120):
        display = EvalDisplay(Console(file=io.StringIO(), width=width, force_terminal=True), plain=False)
        display.start("bdmc_shared")
        display.update("bdmc_shared", 250, 3200, "annealing steps x chains")
        display.start("ais_shared")
        display.update("ais_shared", 12500, 32000, "annealing steps x chains, pass 2")
        out = io.StringIO()
        Console(file=out, width=width).print(display.progress.make_tasks_table(display.progress.tasks))
        display.stop()
        lines = out.getvalue().splitlines()
        assert len(lines) == 2 and "…" not in out.getvalue()
        assert "250/3200" in lines[0] and "12500/32000" in lines[1]
        assert all(re.search(r"left [-\d]:[-\d]{2}:[-\d]{2}", line) for line in lines)
        assert ("annealing steps" in out.getvalue()) == (width >= 110)
