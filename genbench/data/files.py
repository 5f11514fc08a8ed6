"""Where dataset files live, whether we may download them, and a guarded download.

The data root is ``--data-dir`` (``DataRequest.data_dir``), else ``$GENBENCH_DATA``, else
``~/.cache/genbench/data``. ``GENBENCH_OFFLINE=1`` forbids every download attempt (the tests
set it), so a source goes straight from its local files to its fallback or its error.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

from genbench.data.bundle import DataRequest

DOWNLOAD_TIMEOUT_S = 10.0  # per socket operation: an unreachable mirror fails fast


def data_root(request: DataRequest) -> Path:
    """The folder a source looks in (and downloads to)."""
    if request.data_dir:
        return Path(request.data_dir).expanduser()
    if os.environ.get("GENBENCH_DATA"):
        return Path(os.environ["GENBENCH_DATA"]).expanduser()
    return Path.home() / ".cache" / "genbench" / "data"


def offline() -> bool:
    """True when ``GENBENCH_OFFLINE`` is set to anything but empty/0/false/no."""
    return os.environ.get("GENBENCH_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def try_download(fetch: Callable[[], object], folder: Path) -> str | None:
    """Run ``fetch()`` (e.g. a torchvision dataset with ``download=True``) with a short
    socket timeout; return None on success or a one-line reason on failure.

    Files that a failed attempt left in ``folder`` (partial downloads) are removed, so a
    later run does not mistake them for a dataset; files that were there before are kept.
    """
    if offline():
        return "GENBENCH_OFFLINE is set"
    before = set(folder.rglob("*")) if folder.exists() else None
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        fetch()
        return None
    except Exception as err:  # any failure means "no download"; the reason is reported
        _remove_new_files(folder, before)
        reason = str(err).strip().splitlines()
        return f"download failed: {type(err).__name__}: {reason[0] if reason else ''}".rstrip(": ")
    finally:
        socket.setdefaulttimeout(old_timeout)


def _remove_new_files(folder: Path, before: set[Path] | None) -> None:
    """Remove what appeared in ``folder`` since ``before`` (None: the folder was not there)."""
    if not folder.exists():
        return
    new = set(folder.rglob("*")) - (before or set())
    if before is None:
        new.add(folder)
    for path in sorted(new, key=lambda p: len(p.parts), reverse=True):  # contents before dirs
        try:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()
        except OSError:  # best effort: a partial file left behind is reported as corrupt when read
            pass
