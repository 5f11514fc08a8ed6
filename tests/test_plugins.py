"""The registry and all three plugin sources: bundled folder, user folder, entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from genbench.errors import GenbenchError, UnknownName
from genbench.plugins import load_entry_points, load_folder, load_plugins
from genbench.registry import MODELS, get_model

PLUGIN = textwrap.dedent('''
    """A {name} plugin for the tests."""
    from dataclasses import dataclass
    import torch
    from genbench import register_model

    @dataclass(frozen=True)
    class Cfg:
        width: int = 3

    @register_model("{name}")
    class Tiny(torch.nn.Module):
        """{description}"""
        Config = Cfg

        def __init__(self, config, info):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(config.width))
''')


def test_bundled_models_are_found() -> None:
    found = load_plugins()
    assert {"vae", "ae"} <= set(found)
    assert get_model("vae").description.startswith("Variational autoencoder")


def test_unknown_model_names_the_closest() -> None:
    load_plugins()
    with pytest.raises(UnknownName, match="did you mean vae"):
        get_model("vea")


def test_user_plugin_folder(tmp_path: Path) -> None:
    (tmp_path / "tiny_folder.py").write_text(PLUGIN.format(name="tiny-folder", description="From a folder."))
    (tmp_path / "_private.py").write_text("raise RuntimeError('must not be imported')")
    load_folder(tmp_path)
    assert get_model("tiny-folder").description == "From a folder."


def test_plugin_folder_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "envplug.py").write_text(PLUGIN.format(name="tiny-env", description="From env."))
    monkeypatch.setenv("GENBENCH_PLUGINS", str(tmp_path))
    assert "tiny-env" in load_plugins()


def test_broken_plugin_gives_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(GenbenchError, match="broken.py failed to import: ModuleNotFoundError"):
        load_folder(tmp_path)


def test_missing_plugin_folder(tmp_path: Path) -> None:
    with pytest.raises(GenbenchError, match="does not exist"):
        load_folder(tmp_path / "nope")


def _install_distribution(root: Path) -> None:
    """A minimal installed distribution: a module plus dist-info with an entry point."""
    (root / "tinyep_pkg.py").write_text(PLUGIN.format(name="tiny-ep", description="From an entry point."))
    info = root / "tinyep-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyep\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[genbench.models]\ntiny-ep = tinyep_pkg\n")


def test_entry_point_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    load_entry_points()
    assert get_model("tiny-ep").description == "From an entry point."


def test_entry_point_plugin_through_the_cli(tmp_path: Path) -> None:
    _install_distribution(tmp_path)
    out = subprocess.run([sys.executable, "-m", "genbench", "list", "models"], capture_output=True,
                         text=True, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin",
                                         "GENBENCH_OFFLINE": "1", "COLUMNS": "200"}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "tiny-ep" in out.stdout and "From an entry point." in out.stdout
    assert "vae" in out.stdout


def test_same_name_from_two_sources_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dupe.py").write_text(PLUGIN.format(name="vae", description="impostor")
                                      .replace("class Tiny", "class Impostor"))
    load_plugins()
    with pytest.raises(GenbenchError, match="registered twice"):
        load_folder(tmp_path)
    assert MODELS["vae"].cls.__name__ == "VAE"
