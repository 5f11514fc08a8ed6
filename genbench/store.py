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
- ``samples.png``, ``reconstructions.png`` and ``samples/epoch_XXX.png`` (fixed noise);
- ``galleries/<kind>.png`` and ``galleries/galleries.json`` (seed, captions, what was not
  drawn): the galleries decoded where the model was loaded (evaluation, ``genbench gallery``).

``results/<dataset>/_across/<variant>-<preset>/`` holds the pictures across a group's models
(``across_<kind>.png`` and ``across.json``, the row labels), made by ``genbench gallery
--results``. The report reads these files; it never loads a checkpoint.

Writes are atomic (temp file in the same folder + ``os.replace``). A run folder is locked
while a process writes it, so two runs never write the same folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
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


# -- stored files are untrusted input: one schema check, one name rule ---------------------
NAME_MAX = 100  # characters: a name is one path component, far below any NAME_MAX of a disk
_NAME = re.compile(r"[A-Za-z0-9_-]+")  # the registry's rule for models, datasets and metrics


def check_name(value: Any, what: str) -> str:
    """``value`` if it is a name the CLI accepts (ASCII letters, digits, '-' and '_', at most
    ``NAME_MAX`` characters), else one line. Stored strings become folder and file names, so
    ``../x``, ``/abs``, NUL and over-long names never reach a path."""
    if isinstance(value, str) and len(value) <= NAME_MAX and _NAME.fullmatch(value):
        return value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise GenbenchError(f"{what} {shown} is not a name (letters, digits, '-' and '_', at most "
                        f"{NAME_MAX} characters)")


def inside(root: Path, path: Path, what: str = "path") -> Path:
    """``path`` if it resolves inside ``root`` (symlinks followed), else one line."""
    base, target = Path(root).resolve(), Path(path).resolve()
    if target != base and base not in target.parents:
        raise GenbenchError(f"{what} {path} leaves {root}; refusing to write there")
    return Path(path)


def _schema_error(path: Path, why: str) -> GenbenchError:
    return GenbenchError(f"{path}: {why}; it was not written by this genbench (delete the run "
                         "folder, or rerun it with --force)")


def check_config(config: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """config.json's schema: the keys every reader uses, with their types and name rules.

    Names (model, dataset, variant, preset) follow :func:`check_name` because the report and
    evaluation build paths from them. Raises one line naming the file and the key.
    """
    def need(ok: bool, why: str) -> None:
        if not ok:
            raise _schema_error(path, why)

    for key, kind in (("model", str), ("dataset", dict), ("preset", dict), ("model_config", dict)):
        need(key in config, f"no {key!r} key")
        need(isinstance(config[key], kind), f"{key!r} is a JSON {type(config[key]).__name__}, "
             f"not {'a string' if kind is str else 'an object'}")
    try:
        check_name(config["model"], "model")
        check_name(config["dataset"].get("name"), "dataset name")
        if config["dataset"].get("variant") is not None:
            check_name(config["dataset"]["variant"], "dataset variant")
        check_name(config["preset"].get("name"), "preset name")
    except GenbenchError as err:
        raise _schema_error(path, str(err)) from None
    need(all(isinstance(k, str) for k in config["model_config"]), "'model_config' has odd keys")
    seed = config.get("seed", 0)
    need(isinstance(seed, int) and not isinstance(seed, bool) and abs(seed) < 2**63,
         f"'seed' {seed!r:.40} is not an integer")
    for key in ("command", "device"):
        need(config.get(key) is None or isinstance(config[key], str), f"{key!r} is not a string")
    for key in ("overrides", "plugins"):
        need(config.get(key) is None or isinstance(config[key], dict | list),
             f"{key!r} is not an object or list")
    return dict(config)


SCALAR = (int, float, str, bool, type(None))  # what a results frame holds of metrics.json


def check_metrics(metrics: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """metrics.json's schema: ``name -> value`` with ``not_applicable`` a ``name -> reason``
    object and ``status``, ``reason``, ``feature_space`` strings. Raises one line naming the
    file and the key. (Readers keep only scalar values: a list a later version records is
    not shown, and costs nothing.)"""
    na = metrics.get("not_applicable", {})
    if not isinstance(na, dict) or not all(isinstance(v, str) for v in na.values()):
        raise _schema_error(path, "not_applicable is not an object of reasons")
    for key in ("status", "reason", "feature_space"):
        if metrics.get(key) is not None and not isinstance(metrics[key], str):
            raise _schema_error(path, f"{key!r} is not a string")
    return dict(metrics)


def read_config(folder: Path) -> dict[str, Any]:
    """A run's config.json, schema-checked ({} when there is none)."""
    path = Path(folder) / CONFIG
    config = read_json(path)
    return check_config(config, path) if config or path.exists() else {}


def read_metrics(folder: Path) -> dict[str, Any]:
    """A run's metrics.json, schema-checked ({} when there is none)."""
    path = Path(folder) / METRICS
    return check_metrics(read_json(path), path)


def results_root(run_dir: Path, config: Mapping[str, Any]) -> Path | None:
    """The results folder holding ``run_dir``, from the checked layout
    ``<root>/<dataset>/<model>/<run-id>`` (the folder names match config.json), else None:
    a run folder copied elsewhere has no results root, and nothing is written above it."""
    folder = Path(run_dir).absolute()
    parts = folder.parts
    if (len(parts) >= 5 and parts[-2] == config.get("model")
            and parts[-3] == (config.get("dataset") or {}).get("name")):
        return folder.parents[2]
    return None


def run_id(preset: str, variant: str, seed: int, identity: Mapping[str, Any]) -> str:
    """A stable folder name: the same command resumes the same run, another config differs."""
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode())
    return f"{preset}-{variant}-seed{seed}-{digest.hexdigest()[:6]}"


def run_dir(root: Path, dataset: str, model: str, rid: str) -> Path:
    return Path(root) / dataset / model / rid


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all; an OS error names ``path`` (the CLI prints it as
    one line) and leaves the previous file as it was."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _naming(err, path) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; results follow the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise _naming(err, path) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _naming(err: OSError, path: Path) -> OSError:
    """``err`` with the path being written when it names none (a write's ENOSPC names none)."""
    if err.filename is not None:
        return err
    return type(err)(err.errno, err.strerror, str(path)) if err.errno else err


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
    if values.get("status") not in (None, "failed") and "reason" not in values:
        current.pop("reason", None)  # a resumed run that runs or finishes: the old failure is gone
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


GALLERIES, GALLERY_INDEX = "galleries", "galleries.json"  # <run>/galleries/: decoded pictures
ACROSS, ACROSS_INDEX = "_across", "across.json"  # <results>/<dataset>/_across/<variant>-<preset>/


def across_dir(results: Path, dataset: str, variant: str, preset: str) -> Path:
    """Where the pictures across one group's models go (a folder no run folder can be)."""
    return Path(results) / dataset / ACROSS / f"{variant}-{preset}"


def read_index(path: Path) -> dict[str, Any]:
    """A galleries.json or across.json ({} if absent or unreadable: pictures are a courtesy,
    a bad index costs them, never the report)."""
    try:
        return read_json(path) if Path(path).is_file() else {}
    except GenbenchError:
        return {}


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
    this host known to be alive (same PID and start time). Returns what was removed (or that
    there was no lock: unlocking twice is not an error)."""
    lock = Path(folder) / LOCK
    if not Path(folder).is_dir():
        raise GenbenchError(f"{folder} is not a folder; pass a run folder")
    if not lock.exists():  # idempotent: unlocking an unlocked folder is done already
        return f"{folder} is not locked; nothing to do"
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
    config.json or metrics.json cannot be read or fails its schema (:func:`check_config`,
    :func:`check_metrics`), or whose folder names are not names, is left out;
    ``df.attrs["skipped"]`` lists one line per such run (the file and why), so one bad file
    never costs the others.
    """
    import pandas as pd

    rows = []
    skipped: list[str] = []
    for folder in iter_runs(root):
        try:
            for part, what in zip(folder.parts[-3:], ("dataset folder", "model folder", "run folder"),
                                  strict=True):
                check_name(part, f"{folder}: {what}")
            config = read_config(folder)
            metrics = read_metrics(folder)
        except GenbenchError as err:
            skipped.append(str(err))
            continue
        row: dict[str, Any] = {
            "dataset": config["dataset"]["name"],
            "model": config["model"],
            "preset": config["preset"]["name"],
            "variant": config["dataset"].get("variant"),
            "seed": config.get("seed"),
            "run_dir": str(folder),
        }
        remember(read_result_keys(folder))  # the declarations of a plugin's keys, for the report
        for key, value in metrics.items():
            if key == "not_applicable":
                row.update({f"na:{k}": v for k, v in value.items()})
            elif isinstance(value, SCALAR):
                row[key] = value
        rows.append(row)
    df = pd.DataFrame(rows)
    df.attrs["skipped"] = skipped
    return df
