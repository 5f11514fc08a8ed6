"""The progress bar shows a loss for every kind of model: a VAE's "loss", a GAN's two sides."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from pathlib import Path

import pytest
from rich.console import Console

from genbench.progress import RichReporter

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
