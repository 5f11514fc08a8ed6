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
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genbench.errors import GenbenchError

CONFIG, METRICS, HISTORY, CHECKPOINT, LOCK = (
    "config.json", "metrics.json", "history.csv", "checkpoint.pt", ".lock")


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
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as err:
        raise GenbenchError(f"{path} is not valid JSON ({err}); delete it or rerun with --force") from err


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


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the run folder for this process; a live holder makes a second run fail fast."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            pid = _read_pid(lock)
            if pid is not None and _alive(pid):
                raise GenbenchError(
                    f"{folder} is being written by process {pid}; wait for it or stop it"
                ) from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
    else:  # pragma: no cover
        raise GenbenchError(f"cannot lock {folder}")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def _read_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


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

    ``not_applicable`` becomes columns ``na:<metric>`` holding the reason.
    """
    import pandas as pd

    rows = []
    for folder in iter_runs(root):
        config = read_json(folder / CONFIG)
        metrics = read_json(folder / METRICS)
        row: dict[str, Any] = {
            "dataset": config.get("dataset", {}).get("name", folder.parts[-3]),
            "model": config.get("model", folder.parts[-2]),
            "preset": config.get("preset", {}).get("name"),
            "variant": config.get("dataset", {}).get("variant"),
            "seed": config.get("seed"),
            "run_dir": str(folder),
        }
        for key, value in metrics.items():
            if key == "not_applicable":
                row.update({f"na:{k}": v for k, v in value.items()})
            else:
                row[key] = value
        rows.append(row)
    return pd.DataFrame(rows)
