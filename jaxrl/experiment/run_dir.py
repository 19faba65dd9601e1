"""The run folder: config.yaml, metrics.csv, timings.jsonl, summary.json, plots/.

Files are appended as the run goes, so an interrupted run keeps what it logged.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import json
import math
import os
import platform
import shutil
import socket
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from jaxrl.errors import RunDirError


def default_run_dir(config_path: str | Path, root: str | Path = "runs") -> Path:
    """runs/<config name>-<date-time>, unique to the second."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{Path(config_path).stem}-{stamp}"


LOCK_NAME = ".jaxrl.lock"
# What jaxrl writes into a run folder: only these are ever removed, when a run that stopped
# before its first checkpoint is started over.
RUN_FILES = ("config.yaml", "metrics.csv", "timings.jsonl", "summary.json", "checkpoints", "plots",
             "videos", "tensorboard", "wandb", "evaluations", "metrics.tmp", ".summary.json.tmp", ".config.yaml.tmp")


def create_run_dir(path: str | Path) -> Path:
    """Creates an empty run folder; refuses one that already holds anything (but the lock
    this process holds on it)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(p.name != LOCK_NAME for p in path.iterdir())):
        raise RunDirError(f"run folder {path} already exists and is not empty; nothing was "
                          f"changed. Pass another --run-dir (or move the old run away)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create run folder {path}: {error.strerror}") from None
    return path


def is_empty_folder(path: str | Path) -> bool:
    """Whether `path` is missing or holds nothing but a run lock."""
    path = Path(path)
    return not path.exists() or (path.is_dir() and all(p.name == LOCK_NAME for p in path.iterdir()))


def write_text(path: Path, text: str) -> None:
    """Writes a whole file atomically: a reader (or a crash) sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


RUN_CONFIG_MARK = "# the config of this jaxrl run folder (written by jaxrl train)\n"


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a folder `jaxrl train` wrote: its marked config.yaml, or a config.yaml
    with the files a run writes from its first moment on (a project folder that merely holds
    a config.yaml is not)."""
    path = Path(path)
    config = path / "config.yaml"
    if not config.is_file():
        return False
    with config.open("rb") as handle:
        if handle.read(len(RUN_CONFIG_MARK)) == RUN_CONFIG_MARK.encode():
            return True
    return any((path / name).exists() for name in ("checkpoints", "metrics.csv", "timings.jsonl", "summary.json")) \
        or any((p / "config.yaml").is_file() for p in path.iterdir() if p.is_dir())


def has_checkpoint(path: str | Path) -> bool:
    """Whether the run in `path` saved at least one checkpoint (a numbered step folder)."""
    checkpoints = Path(path) / "checkpoints"
    return checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir())


def clear_unstarted(path: Path) -> None:
    """Removes what a run that stopped before its first checkpoint wrote (nothing there can
    be resumed), so the same command starts it over; refuses a folder holding anything else."""
    others = [p.name for p in path.iterdir() if p.name not in RUN_FILES and p.name != LOCK_NAME]
    if others or has_checkpoint(path):
        raise RunDirError(f"run folder {path} holds files jaxrl did not write ({', '.join(sorted(others))}); "
                          f"nothing was changed. Pass another --run-dir")
    for name in RUN_FILES:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


class RunLock:
    """An exclusive lock on a run folder for one process: `fcntl.flock` on `RUN_DIR/.jaxrl.lock`,
    which the kernel releases when the process dies, so a killed run leaves no stale lock.
    A second process is refused with a message naming the holder. Re-entrant within a process;
    on release the lock file is removed, and the folder too when this lock created it and it is
    left empty (a run refused before it wrote anything leaves nothing behind)."""

    _held: dict[Path, "RunLock"] = {}

    def __init__(self, path: str | Path):
        self.path = Path(path).absolute()
        self.depth, self.handle, self.created = 0, None, []

    def __enter__(self) -> "RunLock":
        held = RunLock._held.get(self.path)
        if held is not None:
            held.depth += 1
            return held
        self.created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise RunDirError(f"cannot create run folder {self.path}: {error.strerror}") from None
        self._acquire()
        self.depth = 1
        RunLock._held[self.path] = self
        return self

    def _acquire(self) -> None:
        lock_file = self.path / LOCK_NAME
        while True:
            try:
                handle = open(lock_file, "a+")
            except OSError as error:
                self._remove_if_created()
                raise RunDirError(f"cannot lock run folder {self.path}: {error.strerror}") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                handle.close()
                raise RunDirError(f"run folder {self.path} is in use by {holder}; nothing was changed. "
                                  f"Wait for it to finish (or stop it), or pass another --run-dir") from None
            try:  # the file we locked must still be the one at the path (a releaser unlinks it)
                same = os.fstat(handle.fileno()).st_ino == os.stat(lock_file).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"jaxrl process {os.getpid()} on {socket.gethostname()} "
                     f"(since {dt.datetime.now():%Y-%m-%d %H:%M:%S})\n")
        handle.flush()
        self.handle = handle

    def __exit__(self, *exc: Any) -> None:
        holder = RunLock._held[self.path]
        holder.depth -= 1
        if holder.depth:
            return
        del RunLock._held[self.path]
        (self.path / LOCK_NAME).unlink(missing_ok=True)  # while still locked: see `_acquire`
        holder.handle.close()
        holder._remove_if_created()

    def _remove_if_created(self) -> None:
        """Removes the folders this lock created when nothing was written into them."""
        for folder in self.created:  # the run folder first, then the parents made for it
            if not folder.is_dir() or any(folder.iterdir()):
                return
            folder.rmdir()


class MetricsWriter:
    """Long-format metrics.csv: one row per member per logged point."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] | None = None

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        new = self.columns is None
        if new:
            self.columns = list(rows[0])
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            if new:
                writer.writeheader()
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)


def _cell(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return "" if math.isnan(value) else f"{float(value):.6g}"
    return value


def drop_torn_line(path: Path) -> None:
    """Cuts an appended file back to its last complete line (a kill can stop a write midway)."""
    if not path.is_file():
        return
    with path.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open() as handle:
        return list(csv.DictReader(handle))


def truncate_metrics(path: Path, last_update: int) -> list[str] | None:
    """Drops the rows logged after update `last_update` (written after the checkpoint a run
    resumes from) and a last line a kill cut short; returns the header, or None when there
    is no file yet. A file that is not a metrics table is refused, untouched."""
    if not path.exists():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RunDirError(f"{path} is unreadable ({type(error).__name__}); move it away to resume "
                          f"(the checkpoints are intact)") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()  # a row the process was killed while writing
    rows = list(csv.reader(lines))
    if not rows:
        return None
    header, body = rows[0], [row for row in rows[1:] if row]
    try:
        column = header.index("update")
        if any(len(row) != len(header) for row in body):
            raise ValueError("a row's width differs from the header's")
        kept = [row for row in body if int(row[column]) <= last_update]
    except ValueError as error:
        raise RunDirError(f"{path} is not a jaxrl metrics table ({str(error)[:80]}); move it away to "
                          f"resume (the checkpoints are intact)") from None
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(kept)
    tmp.replace(path)
    return header


def environment_versions() -> dict[str, str]:
    """Versions of the libraries and the device kind, for summary.json."""
    from importlib.metadata import PackageNotFoundError, version

    import jax

    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "gymnax", "jaxrl"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "unknown"
    device = jax.devices()[0]
    out["device_kind"] = device.device_kind
    out["platform"] = device.platform
    out["device_count"] = str(jax.device_count())
    out["cpu"] = platform.processor() or platform.machine()
    return out
