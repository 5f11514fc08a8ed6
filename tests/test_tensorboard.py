"""`--log tensorboard`: the event files hold the run's losses, sample grids and final
metrics with the hparams view, read back with TensorBoard's own reader; logging never
changes a training number."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorboard")

from genbench.errors import GenbenchError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
EPOCHS = 2


def _run(results: Path, log: tuple[str, ...]):
    from genbench.data import DataRequest, load_dataset
    from genbench.training import RunSpec, execute, plan_run

    spec = RunSpec(model="vae", dataset="synthetic", preset="smoke", seed=0, epochs=EPOCHS,
                   results=results, device="cpu", metrics=("elbo", "recon"), log=log)
    plan = plan_run(spec, load_dataset(DataRequest("synthetic")))
    outcome = execute(plan)
    assert outcome.status == "finished", outcome.message
    return outcome, plan.data.steps_per_epoch(plan.preset.batch_size)


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory):
    with pytest.MonkeyPatch.context() as mp:  # module scope: conftest's isolation by hand
        mp.setenv("GENBENCH_OFFLINE", "1")
        mp.setenv("GENBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
        mp.setenv("GENBENCH_DATA", str(tmp_path_factory.getbasetemp() / "data"))
        from genbench.plugins import load_plugins

        load_plugins()
        with_log = _run(tmp_path_factory.mktemp("tb") / "results", ("tensorboard",))
        without = _run(tmp_path_factory.mktemp("plain") / "results", ())
    return with_log, without


def _events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from genbench.tblog import event_dir

    config = json.loads((run_dir / "config.json").read_text())
    acc = EventAccumulator(str(event_dir(run_dir, config)),
                           size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def _history(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "history.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_losses_per_step_and_per_epoch(logged) -> None:
    (outcome, steps), _ = logged
    acc = _events(outcome.run_dir)
    history = _history(outcome.run_dir)
    per_step = acc.Scalars("loss/step/loss")
    assert [e.step for e in per_step] == list(range(1, EPOCHS * steps + 1))  # every step, once
    for epoch, row in enumerate(history):  # the epoch's mean of the steps is history.csv's
        values = [e.value for e in per_step[epoch * steps:(epoch + 1) * steps]]
        assert np.mean(values) == pytest.approx(row["loss"], rel=1e-5)
    per_epoch = acc.Scalars("loss/epoch/loss")
    assert [e.step for e in per_epoch] == [1, 2]
    assert [e.value for e in per_epoch] == pytest.approx([r["loss"] for r in history], rel=1e-6)
    assert [e.value for e in acc.Scalars("epoch/images_per_s")] == pytest.approx(
        [r["images_per_s"] for r in history], rel=1e-6)


def test_sample_grid_of_each_epoch_is_the_saved_png(logged) -> None:
    from PIL import Image

    (outcome, _), _ = logged
    images = _events(outcome.run_dir).Images("samples")
    assert [e.step for e in images] == [1, 2]
    for e in images:
        logged_png = np.asarray(Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB"))
        saved = np.asarray(Image.open(outcome.run_dir / "samples" / f"epoch_{e.step:03d}.png")
                           .convert("RGB"))
        assert logged_png.shape == saved.shape and (logged_png == saved).all()
    assert not (np.asarray(Image.open(io.BytesIO(images[0].encoded_image_string))) ==
                np.asarray(Image.open(io.BytesIO(images[1].encoded_image_string)))).all()


def test_final_metrics_and_the_hparams_view(logged) -> None:
    from tensorboard.plugins.hparams import plugin_data_pb2

    (outcome, _), _ = logged
    acc = _events(outcome.run_dir)
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    config = json.loads((outcome.run_dir / "config.json").read_text())
    for key in ("test_elbo", "recon_bce"):
        (event,) = acc.Scalars(f"metrics/{key}")
        assert event.value == pytest.approx(metrics[key], rel=1e-6) and event.step == EPOCHS
    content = acc.PluginTagToContent("hparams")
    data = {tag: plugin_data_pb2.HParamsPluginData.FromString(raw) for tag, raw in content.items()}
    assert not any(d.HasField("experiment") for d in data.values())  # the folder declares it
    experiment = _experiment(outcome.run_dir.parents[2])
    assert "metrics/test_elbo" in {m.name.tag for m in experiment.metric_infos}
    start = next(d.session_start_info for d in data.values() if d.HasField("session_start_info"))
    hp = start.hparams
    assert hp["model"].string_value == "vae" and hp["dataset"].string_value == "synthetic"
    assert hp["preset"].string_value == "smoke" and hp["seed"].number_value == 0
    assert hp["config.latent_dim"].number_value == config["model_config"]["latent_dim"]


def test_logging_changes_no_number(logged) -> None:
    (with_log, _), (without, _) = logged
    assert with_log.run_dir.name == without.run_dir.name  # the same run, elsewhere
    strip = ("seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in _history(with_log.run_dir)] == [
        {k: v for k, v in r.items() if k not in strip} for r in _history(without.run_dir)]
    for key in ("test_elbo", "recon_bce"):
        assert with_log.metrics[key] == without.metrics[key]
    assert not (without.run_dir.parents[2] / "tensorboard").exists()


def _experiment(results: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(results / "tensorboard" / "_experiment"), size_guidance={"tensors": 0})
    acc.Reload()
    (raw,) = acc.PluginTagToContent("hparams").values()
    return plugin_data_pb2.HParamsPluginData.FromString(raw).experiment


def test_run_names_read_model_and_seed_and_evaluation_is_logged_as_it_runs(logged) -> None:
    from genbench.tblog import event_dir, run_name

    (outcome, _), _ = logged
    config = json.loads((outcome.run_dir / "config.json").read_text())
    where = event_dir(outcome.run_dir, config).relative_to(outcome.run_dir.parents[2] / "tensorboard")
    assert where.as_posix() == "synthetic/dynamic-smoke/vae/seed-0"
    assert run_name({"model": "vae", "seed": 2, "overrides": {"lr": 0.01, "latent_dim": 2}}) == \
        "vae (latent_dim=2, lr=0.01)/seed-2"
    acc = _events(outcome.run_dir)
    for metric in ("elbo", "recon"):  # a fraction per update while it ran, then 1
        done = acc.Scalars(f"eval/{metric}/done")
        assert done and done[-1].value == 1.0 and all(0 <= e.value <= 1 for e in done)
        assert acc.Scalars(f"eval/{metric}/seconds")[-1].value >= 0


def test_hparams_of_a_mixed_folder_declare_every_runs_metric_columns(tmp_path: Path) -> None:
    """A GAN logged after two VAEs: the experiment still lists the VAEs' likelihood columns
    (each run used to declare its own, and TensorBoard showed the first it found)."""
    from genbench.tblog import event_dir, write_experiment

    runs = {"vae": {"test_elbo": -90.0, "test_iwae": -88.0, "test_ais": -87.0, "bdmc_gap": 0.1},
            "gan": {"test_ais_shared": -170.0, "fid": 90.0}}
    for seed, (model, metrics) in enumerate(runs.items()):
        folder = tmp_path / "mnist-5k" / model / f"quick-dynamic-seed{seed}-abcdef"
        folder.mkdir(parents=True)
        config = {"model": model, "seed": seed, "model_config": {"latent_dim": 2},
                  "preset": {"name": "quick"}, "dataset": {"name": "mnist-5k", "variant": "dynamic"}}
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(json.dumps({"status": "finished", **metrics}))
        event_dir(folder, config).mkdir(parents=True)
        write_experiment(tmp_path)
    tags = {m.name.tag for m in _experiment(tmp_path).metric_infos}
    # the headline keys (as their metrics declare them) that any run of the folder has
    assert tags == {f"metrics/{k}" for k in ("test_elbo", "test_iwae", "test_ais", "test_ais_shared",
                                             "fid")}


def test_unknown_logger_and_missing_package_fail_before_training(monkeypatch, tmp_path) -> None:
    import sys

    from genbench.training import RunSpec, plan_run

    spec = RunSpec(model="vae", dataset="synthetic", preset="smoke", results=tmp_path,
                   device="cpu", log=("mlflow",))
    with pytest.raises(GenbenchError, match="unknown --log 'mlflow'; use tensorboard, wandb"):
        plan_run(spec)
    for name in ("tensorboard", "torch.utils.tensorboard"):  # as if not installed
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(GenbenchError) as err:
        plan_run(RunSpec(model="vae", dataset="synthetic", preset="smoke", results=tmp_path,
                         device="cpu", log=("tensorboard",)))
    assert str(err.value) == ('--log tensorboard needs the tensorboard package: '
                              'pip install "genbench[tensorboard]"')
    assert not any(tmp_path.iterdir())


def test_wandb_offline_records_the_run_and_changes_no_number(logged, tmp_path, monkeypatch) -> None:
    """`--log wandb` in wandb's offline mode: a run named like TensorBoard's, its files under
    the run folder, the final metrics in its summary; the numbers equal an unlogged run's."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    outcome, _ = _run(tmp_path / "results", ("wandb",))
    (_, _), (without, _) = logged
    for key in ("test_elbo", "recon_bce"):
        assert outcome.metrics[key] == without.metrics[key]
    runs = list((outcome.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # the id is genbench's run id: a resumed run resumes it
    assert runs[0].name.endswith(outcome.run_dir.name)
    assert len(list(runs[0].glob("files/media/images/samples_*.png"))) == EPOCHS  # a grid an epoch
    # wandb keeps the offline record in its own binary log, with keys and JSON values as text
    record = next(runs[0].glob("run-*.wandb")).read_bytes()
    for text in ("vae/seed-0", "loss/step/loss", "loss/epoch/loss", "eval/elbo/done",
                 "metrics/test_elbo", repr(outcome.metrics["test_elbo"])):
        assert text.encode() in record, text
