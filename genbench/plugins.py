"""Plugin discovery: one mechanism, three sources.

1. the bundled model folder (the repository's ``models/``, installed as ``genbench_models``),
2. a user's plugin folders (``--plugins DIR`` or ``GENBENCH_PLUGINS``, os.pathsep-separated),
3. the ``genbench.models`` entry-point group of installed packages.

A folder plugin is any ``*.py`` file (not starting with ``_``) or package directory in the
folder; importing it runs its ``@register_model`` decorators. An entry point may name a
module (imported) or a class (registered under the entry point's name if it is not yet).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path

from genbench.errors import GenbenchError
from genbench.registry import MODELS, register_model

ENTRY_POINT_GROUP = "genbench.models"
ENV_VAR = "GENBENCH_PLUGINS"
_loaded: set[str] = set()


def bundled_folder() -> Path:
    import genbench_models

    return Path(genbench_models.__file__).parent


def plugin_folders(extra: Iterable[str | Path] = ()) -> list[Path]:
    folders = [bundled_folder()]
    env = os.environ.get(ENV_VAR, "")
    folders += [Path(p) for p in env.split(os.pathsep) if p]
    folders += [Path(p) for p in extra]
    return folders


def load_folder(folder: Path) -> list[str]:
    """Import every plugin file in ``folder``; returns the module names imported."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise GenbenchError(f"plugin folder {folder} does not exist; pass an existing --plugins DIR")
    tag = hashlib.sha1(str(folder).encode()).hexdigest()[:8]
    names = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(("_", ".")):
            continue
        if path.is_dir() and (path / "__init__.py").exists():
            path = path / "__init__.py"
        elif path.suffix != ".py":
            continue
        stem = path.parent.name if path.name == "__init__.py" else path.stem
        names.append(_import_file(path, f"genbench_plugin_{tag}_{stem}"))
    return names


def _import_file(path: Path, module_name: str) -> str:
    if module_name in _loaded:
        return module_name
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise GenbenchError(f"cannot import plugin {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except GenbenchError:
        raise
    except Exception as err:
        del sys.modules[module_name]
        raise GenbenchError(f"plugin {path} failed to import: {type(err).__name__}: {err}") from err
    _loaded.add(module_name)
    return module_name


def load_entry_points() -> list[str]:
    names = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"ep:{ep.value}"
        if key in _loaded:
            continue
        try:
            obj = ep.load()
        except Exception as err:
            raise GenbenchError(
                f"entry point {ep.name} = {ep.value} failed to load: {type(err).__name__}: {err}"
            ) from err
        if isinstance(obj, type) and getattr(obj, "registered_name", None) is None:
            register_model(ep.name)(obj)
        _loaded.add(key)
        names.append(ep.value)
    return names


def load_plugins(extra_folders: Iterable[str | Path] = ()) -> dict[str, str]:
    """Load all three sources; returns model name -> source. Safe to call repeatedly."""
    for folder in plugin_folders(extra_folders):
        load_folder(folder)
    load_entry_points()
    import genbench.data  # noqa: F401  (dataset registration)
    import genbench.metrics  # noqa: F401  (metric registration)

    return {name: entry.source for name, entry in MODELS.items()}


# -- where a run's model came from (recorded in config.json, read back to reload it) --------------
def provenance(model: str) -> dict[str, str] | None:
    """Where the registered ``model`` came from, for config.json's ``plugins`` key: a plugin
    folder (``folder``, ``file`` and the file's ``sha256``) or an installed ``module``; None
    for a bundled model."""
    from genbench.registry import MODELS

    entry = MODELS.get(model)
    module = sys.modules.get(entry.cls.__module__) if entry else None
    file = getattr(module, "__file__", None)
    if entry is None or module is None or file is None:
        return None
    path = Path(file).resolve()
    if path.is_relative_to(bundled_folder().resolve()):
        return None
    if not module.__name__.startswith("genbench_plugin_"):
        return {"module": module.__name__}  # an entry point: installed, loaded every time
    folder = path.parent.parent if path.name == "__init__.py" else path.parent
    return {"folder": str(folder), "file": str(path), "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reload_for_run(config: dict, where: Path) -> None:
    """Make the run's model known: load the plugin folder its config.json records when the
    model is not registered yet, else one line naming the ``--plugins`` to pass.

    A recorded folder is code chosen by a stored file, so it is imported only when the
    plugin file is unchanged since the run (its SHA-256 matches), belongs to this user and
    is writable by nobody else; otherwise the line says which folder to pass if trusted.
    """
    from genbench.registry import MODELS

    name = config.get("model")
    load_plugins()  # the bundled models, entry points, GENBENCH_PLUGINS (as every command does)
    if name in MODELS:
        return
    record = config.get("plugins")
    record = record if isinstance(record, dict) else {}
    folder, file, digest = (record.get(k) for k in ("folder", "file", "sha256"))
    hint = (f"pass --plugins {folder} (Python: plugins=[{str(folder)!r}])" if folder
            else "pass the plugin folder that defines it with --plugins DIR (Python: plugins=[DIR])")
    if not all(isinstance(v, str) for v in (folder, file, digest)):
        raise GenbenchError(f"{where} was trained with model {name!r}, which no loaded plugin "
                            f"registers; {hint}")
    why = _untrusted(Path(folder), Path(file), digest)
    if why is not None:
        raise GenbenchError(f"{where} was trained with the plugin model {name!r} from {file}, "
                            f"which genbench does not reload by itself ({why}); if you trust "
                            f"it, {hint}")
    import warnings

    from genbench.errors import GenbenchWarning

    warnings.warn(f"model {name!r} loaded from {folder}, the plugin folder {where} recorded",
                  GenbenchWarning, stacklevel=2)
    load_folder(Path(folder))
    if name not in MODELS:
        raise GenbenchError(f"{where}: the plugin folder {folder} no longer registers model "
                            f"{name!r}; {hint.replace('pass', 'pass the folder that does, not', 1)}")


def _untrusted(folder: Path, file: Path, digest: str) -> str | None:
    """Why a recorded plugin file may not be imported without the user asking, or None."""
    try:
        if not file.is_file() or file.resolve().parent not in (folder.resolve(),
                                                              folder.resolve() / file.parent.name):
            return "it is not there any more"
        if _sha256(file) != digest:
            return "it changed since the run"
        for path in (file, file.parent, folder):
            st = path.stat()
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                return f"{path} belongs to another user or others may write it"
    except OSError as err:
        return f"unreadable: {err.strerror or err}"
    return None
