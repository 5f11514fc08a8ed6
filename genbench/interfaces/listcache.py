"""`genbench list` without importing torch: the listing of the last run, cached under a key
of everything it was made from.

Listing models means importing their plugin files, and those import torch (seconds). The
rows depend only on genbench's own source, the plugin folders' files and the installed
entry points, so the first `genbench list` writes them to ``$GENBENCH_CACHE/listing/`` under
a hash of those files' paths, sizes and modification times, and every later one with the
same key reads them back in milliseconds. Any edit to genbench, a plugin file or an
installed plugin package changes the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

Sections = list[tuple[str, list[tuple[str, str]]]]


def cache_dir() -> Path:
    """``$GENBENCH_CACHE/listing`` (default ``~/.cache/genbench/listing``)."""
    from genbench.store import cache_root  # no torch: `genbench list` stays fast

    return cache_root() / "listing"


def _files(folder: Path) -> Iterable[str]:
    for path in sorted(folder.rglob("*.py")) if folder.is_dir() else ():
        try:
            st = path.stat()
        except OSError:
            continue
        yield f"{path}:{st.st_size}:{st.st_mtime_ns}"


def listing_key(what: str, plugins: Iterable[str | Path]) -> str:
    """A hash of what the listing is made from: genbench's and the plugin folders' files,
    $GENBENCH_PLUGINS, and the installed `genbench.models` entry points with versions."""
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    import genbench

    folders = [Path(genbench.__file__).parent]
    spec = find_spec("genbench_models")
    if spec is not None and spec.submodule_search_locations:
        folders += [Path(p) for p in spec.submodule_search_locations]
    env = os.environ.get("GENBENCH_PLUGINS", "")
    folders += [Path(p).expanduser().resolve() for p in [*env.split(os.pathsep), *plugins] if p]
    h = hashlib.sha1(f"{what}|{sys.version}|{env}".encode())
    for folder in folders:
        h.update(str(folder).encode())
        for line in _files(folder):
            h.update(line.encode())
    for ep in entry_points(group="genbench.models"):
        dist = getattr(ep, "dist", None)
        h.update(f"{ep.name}={ep.value}@{getattr(dist, 'version', '')}".encode())
    return h.hexdigest()[:16]


def cached_sections(what: str, plugins: Iterable[str | Path], make: Callable[[], Sections]
                    ) -> Sections:
    """The listing for ``what``: read from the cache when its key matches, else ``make()``
    (which imports the plugins) and cache it. An unwritable cache only costs the speed."""
    plugins = list(plugins)
    path = cache_dir() / f"{listing_key(what, plugins)}.json"
    try:
        return [(kind, [tuple(row) for row in rows]) for kind, rows in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        pass
    sections = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sections))
        tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError:
        pass
    return sections
