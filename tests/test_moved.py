"""The old flat import paths (genbench.nn, genbench.training, genbench.cli...) still work after
their modules moved into role packages (kit/, running/, interfaces/): each is the moved module
itself, so a plugin's ``from genbench.nn import X`` and a test's ``monkeypatch.setattr`` by an
old dotted string reach the code that runs, and ``import genbench`` imports none of them."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import genbench
from genbench.moved import MOVED

HERE = Path(genbench.__file__).parent


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_path_is_the_moved_module(old: str, new: str) -> None:
    module = importlib.import_module(old)
    assert module is importlib.import_module(new) is sys.modules[old] is sys.modules[new]
    assert module.__name__ == new and module.__spec__.name == new  # its own spec, not the alias's
    assert getattr(genbench, old.removeprefix("genbench.")) is module
    assert Path(module.__file__).parent != HERE and not (HERE / f"{old.split('.')[1]}.py").exists()
    # `from <old> import name` hands out the moved module's own objects
    name = next(n for n, v in vars(module).items() if getattr(v, "__module__", None) == new)
    scope: dict[str, object] = {}
    exec(f"from {old} import {name}", scope)
    assert scope[name] is getattr(module, name)


def test_a_monkeypatch_by_an_old_dotted_path_patches_the_code_that_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from genbench.running import training

    def patched(device: str | None = None) -> str:
        return "patched"

    monkeypatch.setattr("genbench.training.resolve_device", patched)
    assert training.resolve_device is patched
    monkeypatch.undo()
    assert training.resolve_device is not patched


def test_old_paths_of_names_that_moved_before_still_work() -> None:
    from genbench.kit import adversarial
    from genbench.nn import adversarial_step  # moved from nn to adversarial, then into kit/

    assert adversarial_step is adversarial.adversarial_step


def test_importing_genbench_imports_no_moved_module_and_an_unknown_path_still_fails() -> None:
    code = ("import sys, genbench\n"
            "print(sorted(m for m in sys.modules if m.startswith('genbench.')))\n"
            "try:\n    import genbench.nothing_here\nexcept ModuleNotFoundError as e:\n    print(e.name)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=HERE.parent).stdout.splitlines()
    assert out == ["['genbench.errors', 'genbench.moved', 'genbench.registry']", "genbench.nothing_here"]
