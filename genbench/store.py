"""The results layout, atomic writes, and results -> pandas.

``results/<dataset>/<model>/<run-id>/`` holds:

- ``config.json``: everything needed to rerun (model config, preset and its resolved
  settings, dataset name/variant/splits/source, seed, device, versions, command);
- ``metrics.json``: flat ``name -> number`` plus ``status`` ("finished", "failed",
  "running", "interrupted"), ``reason`` when failed, ``not_applicable``
  (``name -> reason``) and ``feature_space`` where sample quality was measured;
- ``history.csv``: one row per epoch (``epoch``, ``seconds``, ``images_per_s`` and the
  model's mean training losses);
- ``checkpoint.pt``: weights, optimizers, RNG states, progress; ``weights_only=True`` loads;
- ``samples.png``, ``reconstructions.png`` and ``samples/epoch_XXX.png`` (fixed noise).

Writes are atomic (temp file in the same folder + ``os.replace``). A run folder is locked
while a process writes it, so two runs never write the same folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import socket
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError
from genbench.registry import remember

CONFIG, METRICS, HISTORY, CHECKPOINT, LOCK = (
    "config.json", "metrics.json", "history.csv", "checkpoint.pt", ".lock")


def cache_root() -> Path:
    """``$GENBENCH_CACHE``, else ``~/.cache/genbench``: the root of every cache genbench keeps
    (evaluator weights, measures, renders, reference statistics)."""
    return Path(os.environ.get("GENBENCH_CACHE", Path.home() / ".cache" / "genbench"))


def check_results_root(root: Path) -> None:
    """A results folder can be made here: no file in the way (one line, before any work)."""
    path = Path(root).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            if not candidate.is_dir():
                what = "is a file" if candidate == path else f"is under the file {candidate}"
                raise GenbenchError(f"--results {root} {what}; pass a folder")
            if not os.access(candidate, os.W_OK | os.X_OK):
                raise GenbenchError(f"--results {root}: {candidate} is not writable")
            return


def check_output_file(path: Path, flag: str = "--out") -> None:
    """A file can be written at ``path``: not a folder, no file in the way of its folder
    (one line, before any work)."""
    path = Path(path)
    if path.is_dir():
        raise GenbenchError(f"{flag} {path} is a folder; pass a file path")
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise GenbenchError(f"{flag} {path} is under the file {parent}; pass a path in a folder")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise GenbenchError(f"{flag} {path}: {parent} is not writable")
            return


def run_id(preset: str, variant: str, seed: int, identity: Mapping[str, Any]) -> str:
    """A stable folder name: the same command resumes the same run, another config differs."""
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{preset}-{variant}-seed{seed}-{digest.hexdigest()[:6]}"


def run_dir(root: Path, dataset: str, model: str, rid: str) -> Path:
    return Path(root) / dataset / model / rid


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results follow the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path`` ({} when there is no file); anything unreadable is one line."""
    try:
        value = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as err:
        raise GenbenchError(f"{path} is not valid JSON ({err}); delete it or rerun with --force") from None
    except UnicodeDecodeError:
        raise GenbenchError(f"{path} is not UTF-8 text; delete it or rerun with --force") from None
    except OSError as err:
        raise GenbenchError(f"{path} is unreadable ({err.strerror or err})") from None
    if not isinstance(value, dict):
        raise GenbenchError(f"{path} holds a JSON {type(value).__name__}, not an object; delete it "
                            "or rerun with --force")
    return value


def update_metrics(folder: Path, values: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``values`` into metrics.json (``not_applicable`` merged key by key)."""
    current = read_json(folder / METRICS)
    na = dict(current.get("not_applicable", {}))
    na.update(values.get("not_applicable", {}))
    current.update({k: v for k, v in values.items() if k != "not_applicable"})
    for key in list(na):  # a number now measured is no longer n/a
        if key in values and key != "not_applicable":
            na.pop(key)
    if na:
        current["not_applicable"] = na
    write_json(folder / METRICS, current)
    return current


RESULT_KEYS = "result_keys.json"  # the declarations (registry.ResultKey) of the run's numbers


def update_result_keys(folder: Path, declarations: list[dict[str, Any]]) -> None:
    """Merge ``declarations`` (ResultKey.to_json()) into the run's result_keys.json, so the
    report labels, directs and places a plugin's metric without importing the plugin."""
    if not declarations:
        return
    known = {d["name"]: d for d in read_result_keys(folder) if isinstance(d, dict) and "name" in d}
    known.update({d["name"]: d for d in declarations})
    write_json(Path(folder) / RESULT_KEYS, {"keys": list(known.values())})


def read_result_keys(folder: Path) -> list[Any]:
    """The declarations a run folder holds ([] without result_keys.json; unreadable: [])."""
    try:
        keys = read_json(Path(folder) / RESULT_KEYS).get("keys", [])
    except GenbenchError:
        return []  # labels are a courtesy: a bad file costs them, never the run's numbers
    return keys if isinstance(keys, list) else []


def write_history(path: Path, rows: list[Mapping[str, Any]]) -> None:
    if not rows:
        return
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buf.getvalue().encode())


def save_torch(path: Path, obj: Any) -> None:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


class Busy(GenbenchError):
    """The run folder is held by another live process (or one on another host)."""


def load_torch(path: Path, map_location: Any = "cpu", keys: tuple[str, ...] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` with any failure as one line naming the file
    (never advising to lift ``weights_only``: a checkpoint holding pickled code is refused)."""
    import pickle

    import torch

    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise GenbenchError(f"{path} does not exist; run training first") from None
    except pickle.UnpicklingError as err:
        if "weights only" in str(err).lower() or "weights_only" in str(err):
            raise GenbenchError(
                f"{path} is not a plain tensor checkpoint (it holds pickled Python objects, "
                "which genbench never loads); it was not written by genbench: delete it and "
                "rerun the run with --force") from None
        raise GenbenchError(f"{path} is unreadable (corrupt: {_first_line(err)}); delete it "
                            "and rerun the run with --force") from None
    except Exception as err:
        raise GenbenchError(f"{path} is unreadable (truncated or corrupt: {type(err).__name__}: "
                            f"{_first_line(err)}); delete it and rerun the run with --force"
                            ) from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise GenbenchError(f"{path} is not a genbench checkpoint (no {', '.join(missing)}); "
                            "delete it and rerun the run with --force")
    return state


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:200] if text else type(err).__name__


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the run folder for this process; a live holder makes a second run fail fast.

    The ``.lock`` file records host, PID, the process's start time (``/proc/PID/stat``
    field 22, where there is a /proc) and the boot id. A lock from this host whose process is
    gone, or whose PID now belongs to another process (another start time, another boot), is
    stale and taken over. A lock from another host is never taken over (on a shared
    filesystem its process may be alive); ``genbench unlock RUN_DIR`` removes it once the user
    knows it is stale. Taking the lock also removes temp files (``.*.tmp``) that a killed
    writer left in the folder and its ``samples/``.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GenbenchError(f"cannot create the run folder {folder}: {err.strerror or err}") from None
    lock = folder / LOCK
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            break
        except FileExistsError:
            why = _holder_alive(read_lock(lock), lock)
            if why is not None:
                raise Busy(f"{folder} is in use: {why}") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
        except OSError as err:
            raise GenbenchError(f"cannot lock {folder}: {err.strerror or err}") from None
    else:  # pragma: no cover
        raise Busy(f"cannot lock {folder}: another process keeps taking it")
    try:
        _write_lock(fd, (json.dumps(_this_process()) + "\n").encode())
    except OSError as err:
        os.close(fd)
        lock.unlink(missing_ok=True)
        raise GenbenchError(f"cannot write the lock {lock}: {err.strerror or err}") from None
    os.close(fd)
    try:
        remove_stale_temp_files(folder)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _write_lock(fd: int, data: bytes) -> None:
    os.write(fd, data)
    os.fsync(fd)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Temp files of atomic writes (``.NAME.*.tmp``) left by a killed writer; call only
    while holding the folder's lock (then no writer of ours is alive)."""
    removed = []
    for sub in (folder, folder / "samples"):
        for tmp in sub.glob(".*.tmp"):
            try:
                tmp.unlink()
                removed.append(tmp)
            except OSError:
                pass
    return removed


def unlock(folder: Path) -> str:
    """Remove a run folder's lock that the user knows is stale; refuses only a holder on
    this host known to be alive (same PID and start time). Returns what was removed."""
    lock = Path(folder) / LOCK
    if not lock.exists():
        raise GenbenchError(f"{folder} is not locked (no {LOCK} in it)")
    holder = read_lock(lock)
    pid, start = holder.get("pid"), holder.get("start")
    if (holder.get("host") == socket.gethostname() and isinstance(pid, int) and start is not None
            and _alive(pid) and process_start(pid) == start):
        raise Busy(f"{folder} is in use: being written by {_describe(holder)}; stop it first")
    lock.unlink(missing_ok=True)
    return f"removed {lock} ({_describe(holder)})"


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat[stat.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _this_process() -> dict[str, Any]:
    import datetime

    return {"host": socket.gethostname(), "pid": os.getpid(), "start": process_start(os.getpid()),
            "boot": _boot_id(),
            "since": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def read_lock(lock: Path) -> dict[str, Any]:
    """The holder a lock file records ({} when empty or unreadable; an old lock holds only
    a PID)."""
    try:
        value = json.loads(lock.read_text().strip())
    except (OSError, ValueError):
        return {}
    if isinstance(value, int):
        return {"pid": value}
    return value if isinstance(value, dict) else {}


def _describe(holder: Mapping[str, Any]) -> str:
    where = f" on host {holder['host']}" if holder.get("host") else ""
    since = f" since {holder['since']}" if holder.get("since") else ""
    return f"process {holder.get('pid', '?')}{where}{since}"


EMPTY_LOCK_GRACE_S = 10.0  # a lock file just created holds no record yet for a moment


def _holder_alive(holder: Mapping[str, Any], lock: Path) -> str | None:
    """Why the holder may still be alive (a message), or None when the lock is stale."""
    import time

    pid = holder.get("pid")
    if not isinstance(pid, int):  # empty: being written right now, or left by a crash
        try:
            young = time.time() - lock.stat().st_mtime < EMPTY_LOCK_GRACE_S
        except OSError:
            return None
        return f"{lock} is being created by another process" if young else None
    host = holder.get("host")
    if host is not None and host != socket.gethostname():
        return (f"locked by {_describe(holder)}, which may still be running there; if it is "
                f"not, run `genbench unlock {lock.parent}` (or delete {lock})")
    if holder.get("boot") and _boot_id() and holder["boot"] != _boot_id():
        return None  # written before this host rebooted
    if not _alive(pid):
        return None
    start = holder.get("start")
    if start is not None and process_start(pid) not in (None, start):
        return None  # the PID now belongs to another process
    unsure = "" if start is not None else (
        f" (if that PID is no genbench process, `genbench unlock {lock.parent}`)")
    return f"being written by {_describe(holder)}; wait for it or stop it{unsure}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def iter_runs(root: Path) -> Iterator[Path]:
    """Every run folder under ``root`` (a folder with config.json), sorted."""
    root = Path(root)
    if not root.exists():
        return
    yield from sorted(p.parent for p in root.glob("*/*/*/" + CONFIG))


def load_results(root: Path):  # -> pandas.DataFrame
    """One row per run: dataset, model, preset, variant, seed, run_dir, status, metrics...

    ``not_applicable`` becomes columns ``na:<metric>`` holding the reason. A run whose
    config.json or metrics.json cannot be read is left out; ``df.attrs["skipped"]`` lists one
    line per such run (the file and why), so one bad file never costs the others.
    """
    import pandas as pd

    rows = []
    skipped: list[str] = []
    for folder in iter_runs(root):
        try:
            config = read_json(folder / CONFIG)
            metrics = read_json(folder / METRICS)
            if not isinstance(metrics.get("not_applicable", {}), dict):
                raise GenbenchError(f"{folder / METRICS}: not_applicable is not an object")
        except GenbenchError as err:
            skipped.append(str(err))
            continue
        row: dict[str, Any] = {
            "dataset": config.get("dataset", {}).get("name", folder.parts[-3]),
            "model": config.get("model", folder.parts[-2]),
            "preset": config.get("preset", {}).get("name"),
            "variant": config.get("dataset", {}).get("variant"),
            "seed": config.get("seed"),
            "run_dir": str(folder),
        }
        remember(read_result_keys(folder))  # the declarations of a plugin's keys, for the report
        for key, value in metrics.items():
            if key == "not_applicable":
                row.update({f"na:{k}": v for k, v in value.items()})
            else:
                row[key] = value
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["skipped"] = skipped
    return df
