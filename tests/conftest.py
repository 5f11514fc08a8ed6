"""Test-wide rules: offline, a private cache, deterministic, small."""

from __future__ import annotations

import os

import pytest
import torch

os.environ["GENBENCH_OFFLINE"] = "1"  # nothing downloads in tests


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENBENCH_OFFLINE", "1")
    monkeypatch.setenv("GENBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    # a developer's real MNIST in ~/.cache must not leak into the tests
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path_factory.getbasetemp() / "data"))
    monkeypatch.delenv("GENBENCH_PLUGINS", raising=False)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def plugins_loaded() -> None:
    from genbench.plugins import load_plugins

    load_plugins()


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors gain nothing from a second thread, and on a shared machine OpenMP's
    waits for it cost more than the work. Modules of small-tensor numerics opt in with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray (2 CPUs) for the whole test session, shut down at its end. The tasks
    carry the driver's GENBENCH_* settings, so each test's private cache reaches them."""
    ray = pytest.importorskip("ray")
    started = not ray.is_initialized()
    if started:
        import logging

        os.environ.setdefault("RAY_worker_niceness", "0")  # as genbench starts a local Ray
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    yield ray
    if started:
        ray.shutdown()


# -- shared data and a model whose likelihood is known in closed form ---------------------
@pytest.fixture(scope="module")
def continuous():
    """The continuous synthetic set (the test of every estimator against PPCA runs on it)."""
    from genbench.data import DataRequest, load_dataset

    return load_dataset(DataRequest("synthetic", variant="continuous"))


@pytest.fixture(scope="module")
def ppca(continuous):
    """Probabilistic PCA fitted in closed form to ``continuous`` (tests/ppca_plugin.py): exact
    log p(x), exact posterior, its own Gaussian decoder."""
    from ppca_plugin import PPCA

    model = PPCA(PPCA.Config(latent_dim=5), continuous.info)
    model.fit(continuous.eval_x("train"))
    return model.eval().requires_grad_(False)
