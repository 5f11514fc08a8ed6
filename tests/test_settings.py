"""Ranges are declared on the fields, not guessed from their names: every number a built-in
model's Config or the Preset holds says what values it takes, and the check reads that."""

from __future__ import annotations

import dataclasses

import pytest
from run_folders import bundled_models

from genbench.errors import GenbenchError
from genbench.executors import RayOptions, SlurmOptions
from genbench.presets import Preset, get_preset
from genbench.ranges import declared
from genbench.settings import positive, resolve

pytestmark = pytest.mark.usefixtures("plugins_loaded")


def _configs() -> list[type]:
    from genbench.plugins import load_plugins
    from genbench.registry import MODELS

    load_plugins()
    built_in = {MODELS[name].cls.Config for name in bundled_models()}
    return [Preset, RayOptions, SlurmOptions, *sorted(built_in, key=lambda c: c.__qualname__)]


@pytest.mark.parametrize("cls", _configs(), ids=lambda c: c.__qualname__)
def test_every_built_in_number_declares_its_range(cls: type) -> None:
    """Every int, float or tuple of them (by its annotation) carries a declared range."""
    numbers = [f for f in dataclasses.fields(cls)
               if any(t in str(f.type) for t in ("int", "float")) and "bool" not in str(f.type)]
    assert numbers or cls is SlurmOptions
    assert [f.name for f in numbers if not declared(f)] == []


def test_a_declared_range_is_what_is_checked() -> None:
    """A name the old guesses knew nothing about (``kernel``) is checked by its declaration,
    and a declared name beats the guess its name would have had."""
    from genbench.registry import get_model

    smoke = get_preset("smoke")
    pixelcnn = get_model("pixelcnn").cls.Config
    with pytest.raises(GenbenchError, match=r"--set kernel=0: kernel must be at least 1 \(a count\)"):
        resolve(pixelcnn, {}, smoke, {"kernel": "0"})
    gan = get_model("gan").cls.Config
    with pytest.raises(GenbenchError, match="d_activation must be one of leaky_relu, maxout, relu"):
        resolve(gan, {}, smoke, {"d_activation": "tanhh"})

    @dataclasses.dataclass(frozen=True)
    class Config:
        n_layers: int = positive(2)
        latent_dim: int = dataclasses.field(default=3, metadata={"range": (-5, None)})  # declared

    assert resolve(Config, {}, smoke, {"latent_dim": "0"})[0].latent_dim == 0  # the guess would refuse
    with pytest.raises(GenbenchError, match="latent_dim must be at least -5"):
        resolve(Config, {}, smoke, {"latent_dim": "-6"})
