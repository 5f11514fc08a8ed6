"""The old flat import paths of the modules that moved into role packages, kept for users.

genbench's modules once sat side by side in ``genbench/``; they are now grouped by role
(``kit/``, ``running/``, ``interfaces/``). Plugins, scripts and tests written before the move
import ``genbench.nn``, ``genbench.training``, ``genbench.cli``...: :class:`OldPaths` answers
each such import with the moved module itself (the same object, so ``genbench.nn is
genbench.kit.nn`` and ``monkeypatch.setattr("genbench.training.X", ...)`` patches the code that
runs). Nothing is imported until an old path is asked for, so ``import genbench`` stays light.
Code inside genbench imports the new paths (tests/test_layers.py checks it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

# each role package and the modules that moved into it from the top of genbench
PACKAGES = {
    "kit": ("nn", "latent", "observation", "adversarial", "edits"),
    "running": ("runs", "costs", "check", "scoring", "training", "tblog", "wandblog", "loggers",
                "display", "evaluation", "outside"),
    "interfaces": ("cli", "api", "export", "report_cli", "commands", "notebook", "listing",
                   "listcache"),
}
MOVED = {f"genbench.{m}": f"genbench.{pkg}.{m}" for pkg, mods in PACKAGES.items() for m in mods}


class OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old path in :data:`MOVED` and loads it as the module at its new path."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(MOVED[spec.name])
        self._specs[module.__name__] = module.__spec__  # the import system overwrites it next
        return module

    def exec_module(self, module: ModuleType) -> None:
        # the module ran already, under its new name; give it back its own spec
        module.__spec__ = self._specs.pop(module.__name__, module.__spec__)


def install() -> None:
    """Put :class:`OldPaths` first on ``sys.meta_path``, once (``import genbench`` calls it).

    First, because a finder further down could answer an old path with a stale file: an
    editable install's finder maps ``genbench.*`` to its own checkout."""
    if not any(isinstance(f, OldPaths) for f in sys.meta_path):
        sys.meta_path.insert(0, OldPaths())
