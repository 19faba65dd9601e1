"""The run folder: config.yaml, metrics.csv, timings.jsonl, summary.json, plots/.

Files are appended as the run goes, so an interrupted run keeps what it logged.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import platform
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from jaxrl.errors import RunDirError


def default_run_dir(config_path: str | Path, root: str | Path = "runs") -> Path:
    """runs/<config name>-<date-time>, unique to the second."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(root) / f"{Path(config_path).stem}-{stamp}"


def create_run_dir(path: str | Path) -> Path:
    """Creates an empty run folder; refuses one that already holds anything."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RunDirError(f"run folder {path} already exists and is not empty; nothing was "
                          f"changed. Pass another --run-dir (or move the old run away)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunDirError(f"cannot create run folder {path}: {error.strerror}") from None
    return path


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


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def read_metrics(path: str | Path) -> list[dict[str, str]]:
    with Path(path).open() as handle:
        return list(csv.DictReader(handle))


def truncate_metrics(path: Path, last_update: int) -> list[str] | None:
    """Drops the rows logged after update `last_update` (written after the checkpoint a run
    resumes from); returns the header, or None when there is no file yet."""
    if not path.exists():
        return None
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            return None
        column = header.index("update")
        rows = [row for row in reader if row and int(row[column]) <= last_update]
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
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
