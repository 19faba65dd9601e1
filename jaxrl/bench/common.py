"""What every benchmark suite shares: the machine header, fresh-process measurements, medians
over repeats and writing a report (Markdown + JSON + PNGs) under `benchmarks/results/<kind>/`."""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple, Sequence

RESULT_PREFIX = "BENCH_RESULT "
VERSIONED = ("jax", "jaxlib", "flax", "optax", "gymnax", "brax", "jaxrl")


class Budget(NamedTuple):
    """How much a suite runs: `tiny` is CI's smoke test, `quick` a few minutes, `full` the
    figures we commit."""

    name: str
    repeats: int


BUDGETS = ("tiny", "quick", "full")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's best guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str:
    """An installed distribution's version, or 'not installed'."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (Linux reports ru_maxrss in KiB)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def device_peak_mib(devices: Sequence[Any]) -> float | None:
    """The largest per-device peak of accelerator memory in MiB (None where not reported, e.g. CPU)."""
    peaks = []
    for device in devices:
        try:
            stats = device.memory_stats()
        except Exception:  # noqa: BLE001  (backends without memory stats raise or return None)
            stats = None
        if stats and "peak_bytes_in_use" in stats:
            peaks.append(stats["peak_bytes_in_use"] / 2**20)
    return max(peaks) if peaks else None


def device_info() -> dict[str, Any]:
    """The JAX platform, device kind and device count this process sees."""
    import jax

    devices = jax.devices()
    return {"platform": devices[0].platform, "device_count": len(devices),
            "device_kind": devices[0].device_kind}


def machine_kind(platform_name: str, device_kind: str, cores: int | None = None) -> str:
    """The results folder name: `cpu-<cores>core` on CPU, `gpu-<kind>` (e.g. gpu-nvidia-h200) else."""
    if platform_name == "cpu":
        return f"cpu-{cores or os.cpu_count()}core"
    return "gpu-" + re.sub(r"[^a-z0-9]+", "-", device_kind.lower()).strip("-")


def probe_devices(timeout: float = 300.0) -> dict[str, Any]:
    """Platform, device kind and count as a default worker process sees them (this process may
    not have imported jax, and must not fix its device count)."""
    code = ("import json, jax; d = jax.devices(); print(json.dumps({'platform': d[0].platform, "
            "'device_kind': d[0].device_kind, 'device_count': len(d)}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=jaxrl_worker_env())
    if done.returncode != 0:
        raise RuntimeError(f"could not start a JAX process: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine_info(devices: dict[str, Any]) -> dict[str, Any]:
    """Hardware, date and library versions for a report header."""
    return {
        "kind": machine_kind(devices["platform"], devices["device_kind"]),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
        "platform": devices["platform"], "device_kind": devices["device_kind"],
        "device_count": devices["device_count"],
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in VERSIONED},
    }


def header(title: str, machine: dict[str, Any], budget: Budget, notes: Iterable[str] = (),
           timed: bool = True) -> list[str]:
    """The Markdown lines every report starts with: what was measured, where, when, with what
    (`timed`: the rows are timings, repeated and reported as medians)."""
    accelerator = ("" if machine["platform"] == "cpu"
                   else f"; {machine['device_count']} × {machine['device_kind']}")
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v != "not installed")
    return [f"# {title}", "",
            f"- machine: {machine['cpu_model']}, {machine['cpu_count']} cores{accelerator} "
            f"(`{machine['kind']}`)",
            f"- date: {machine['date']}",
            f"- versions: {versions}; Python {machine['python']}",
            f"- budget: `{budget.name}`" + (f", {budget.repeats} fresh process(es) per row, timings are medians"
                                            if timed else ", one fresh process per row"),
            *[f"- {note}" for note in notes], ""]


def jaxrl_worker_env(devices: int | None = None, compilation_cache: bool = False) -> dict[str, str]:
    """A worker's environment: exactly `jaxrl train`'s CPU defaults (one device per core, or
    `devices`; Eigen threads off) and no persistent compilation cache, so compile seconds are
    real (`compilation_cache`: leave JAX's cache switch alone, for a process given a cache folder)."""
    from jaxrl.runtime import cpu_defaults

    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR",
                        "JAX_ENABLE_COMPILATION_CACHE")}
    cpu_defaults(devices, environ=env)
    if not compilation_cache:
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    env["JAXRL_COMPILATION_CACHE"] = "off"
    return env


def run_command(command: Sequence[str], env: dict[str, str] | None, timeout: float, record: dict[str, Any],
                cwd: str | Path | None = None) -> subprocess.CompletedProcess | None:
    """Runs `command` as a fresh process; `record` gains its wall seconds (`process_seconds`)
    and, unless it exits 0 in time, status error/timeout with the reason (then returns None)."""
    start = time.perf_counter()
    try:
        done = subprocess.run(list(command), env=env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        record.update(status="timeout", error=f"no result within {timeout:.0f} s")
        return None
    finally:
        record["process_seconds"] = round(time.perf_counter() - start, 2)
    if done.returncode != 0:
        record.update(status="error", error=f"exit {done.returncode}: " + last_lines(done))
        return None
    record["status"] = "ok"
    return done


def last_lines(done: subprocess.CompletedProcess, count: int = 4) -> str:
    """The last lines a finished process wrote (stderr, else stdout), joined by ` | `."""
    return " | ".join((done.stderr or done.stdout).strip().splitlines()[-count:])


def run_in_process(command: Sequence[str], env: dict[str, str] | None, timeout: float,
                   record: dict[str, Any], cwd: str | Path | None = None) -> dict[str, Any]:
    """Runs one measurement as a fresh process that prints `RESULT_PREFIX <json>`; `record`
    gains that result (status ok) or the reason there is none (status error/timeout)."""
    done = run_command(command, env, timeout, record, cwd)
    if done is None:
        return record
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        record.update(status="error", error="exit 0 without a result: " + last_lines(done))
        return record
    record.update(json.loads(lines[-1][len(RESULT_PREFIX):]), status="ok")
    return record


def run_jaxrl(spec: dict[str, Any], timeout: float, record: dict[str, Any],
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """One jaxrl training run in a fresh `jaxrl.bench.worker` process (what `jaxrl train` runs),
    with the worker environment unless `env` is given."""
    return run_in_process([sys.executable, "-m", "jaxrl.bench.worker", json.dumps(spec)],
                          env or jaxrl_worker_env(), timeout, record)


def emit(result: dict[str, Any]) -> None:
    """A worker's last word: its result as one JSON line the parent looks for."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def median_of(runs: Sequence[dict[str, Any]], keys: Sequence[str] = ("steady_sps", "compile_seconds")
              ) -> dict[str, Any]:
    """One row from repeated runs of the same thing: the first good run with `keys` replaced by
    their medians, the SPS range, the largest memory peaks, and how many runs counted."""
    ok = [run for run in runs if run.get("status") == "ok"]
    if not ok:
        return {**runs[0], "repeats": 0}
    row = dict(ok[0])
    for key in keys:
        values = [run[key] for run in ok if run.get(key) is not None]
        row[key] = statistics.median(values) if values else None
    if "steady_sps" in keys:
        row["steady_sps_range"] = [min(run["steady_sps"] for run in ok), max(run["steady_sps"] for run in ok)]
    for key in ("peak_rss_mib", "peak_device_mib"):
        values = [run[key] for run in ok if run.get(key) is not None]
        row[key] = max(values) if values else None
    row["repeats"] = len(ok)
    return row


def progress(message: str) -> None:
    """A timestamped progress line on stderr (tables go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def write_report(out_dir: Path, name: str, markdown: str, payload: dict[str, Any],
                 figures: Iterable[Callable[[Path], Path | None]] = ()) -> list[Path]:
    """Writes `<name>.md`, `<name>.json` and each figure into `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{name}.md", out_dir / f"{name}.json"]
    written[0].write_text(markdown)
    written[1].write_text(json.dumps(payload, indent=1, default=float))
    for figure in figures:
        path = figure(out_dir)
        if path is not None:
            written.append(path)
    return written


EXTRA_MODULES = {"brax": "brax", "box2d": "Box2D", "atari": "ale_py", "peers": "stable_baselines3",
                 "envpool": "envpool", "optuna": "optuna", "mujoco": "imageio"}  # imageio: gymnasium's extra


def missing_extra(extra: str | None) -> str | None:
    """Why something needing jaxrl's optional `extra` cannot run here (None when it can)."""
    import importlib.util

    module = EXTRA_MODULES.get(extra or "")
    if module and importlib.util.find_spec(module) is None:
        return f"not installed: pip install 'jaxrl[{extra}]'"
    return None


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    """A table cell for a number: thousands separators, `–` where there is none."""
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:,.{digits}f}{suffix}"


def summary(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min and max of repeated measurements (None when there are none)."""
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def paired_ratios(ours: Sequence[dict[str, Any]], theirs: Sequence[dict[str, Any]], key: str = "steady_sps"
                  ) -> list[float]:
    """ours/theirs of `key` per repeat, pairing runs of the same repeat (same machine state);
    repeats where either side failed are left out."""
    theirs_by_repeat = {run.get("repeat"): run for run in theirs if run.get("status") == "ok"}
    ratios = []
    for run in ours:
        other = theirs_by_repeat.get(run.get("repeat"))
        if run.get("status") == "ok" and other and run.get(key) and other.get(key):
            ratios.append(run[key] / other[key])
    return ratios


def fmt_range(center: float | None, low: float | None, high: float | None, digits: int = 0,
              suffix: str = "") -> str:
    """`center [low–high]` (the range only when it is one), `–` when there is no value."""
    if center is None:
        return "–"
    text = fmt(center, digits, suffix)
    if low is not None and high is not None and (low != high):
        text += f" [{fmt(low, digits)}–{fmt(high, digits)}]"
    return text


def eval_cell(per_seed: Sequence[float] | None) -> str:
    """`mean / IQM` of the per-seed greedy returns."""
    if not per_seed:
        return "–"
    from jaxrl.analysis.stats import iqm  # the same IQM as every jaxrl summary

    return f"{sum(per_seed) / len(per_seed):.1f} / {iqm(per_seed):.1f}"
