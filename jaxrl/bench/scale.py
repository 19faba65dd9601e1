"""The `scale` suite: PPO CartPole-v1 (`configs/ppo_cartpole.yaml`) as the population and the
devices grow, and compile time with and without JAX's persistent compilation cache.

Every row is a fresh `jaxrl.bench.worker` process training the config exactly as `jaxrl train`
does (only `seeds` and `total_env_steps` change, plus evaluation at the end only and five
chunks), with `jaxrl train`'s CPU defaults. Three parts (`--only size devices cache`):

- size: steady SPS against population size, on every device;
- devices: a fixed population on d devices: `JAX_NUM_CPU_DEVICES=d` on CPU (more than the
  cores is allowed, and shows the cost of oversubscribing), the first d GPUs on a GPU
  (`jaxrl train --devices d`);
- cache: three processes at the fixed population: no cache, then `cold` and `warm` sharing one
  fresh cache folder (`jaxrl train --compilation-cache DIR`): `cold` fills it, `warm` loads it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

from jaxrl.bench import common
from jaxrl.bench.throughput import SPEED_ONLY, chunked, platform_class

CONFIG = "ppo_cartpole.yaml"


class Part(NamedTuple):
    """One part of the suite, as `--only` names it."""

    name: str
    title: str


ROWS = (Part("size", "Steady SPS against population size"), Part("devices", "Steady SPS against device count"),
        Part("cache", "Compile time with and without the persistent compilation cache"))
CACHE_MODES = {"off": "no cache", "cold": "cold (empty cache folder)", "warm": "warm (same folder, fresh process)"}


class Plan(NamedTuple):
    """A budget's sizes and env steps per member."""

    sizes: tuple[int, ...]  # the size part's populations
    steps: int  # env steps per member in the size part...
    cuts: dict[int, int]  # ...except these populations (so large ones fit the session)
    population: int  # members of the devices and cache parts
    device_steps: int
    cache_steps: int
    devices: tuple[int, ...] = (1, 2)  # CPU device counts (a GPU: 1, 2, 4, ... up to the GPUs present)


PLANS = {
    ("tiny", "cpu"): Plan((1, 2), 2_048, {}, 2, 2_048, 2_048),
    ("quick", "cpu"): Plan((1, 16, 256), 20_480, {}, 64, 10_240, 10_240),
    ("full", "cpu"): Plan((1, 4, 16, 64, 256, 1024, 4096), 100_352, {1024: 20_480, 4096: 10_752}, 256,
                          30_720, 10_752, (1, 2, 4)),
    ("tiny", "gpu"): Plan((1, 2), 2_048, {}, 2, 2_048, 2_048),
    ("quick", "gpu"): Plan((1, 256, 4096), 102_400, {}, 1024, 102_400, 10_240),
    ("full", "gpu"): Plan((1, 16, 256, 1024, 4096), 500_224, {}, 4096, 500_224, 10_752),
}


def device_counts(plan: Plan, machine: dict[str, Any]) -> list[int]:
    """The devices part's counts: the plan's on CPU (any count can be made); on a GPU, 1, 2,
    4, ... and the full count of the GPUs present."""
    if machine["platform"] == "cpu":
        return list(plan.devices)
    available = machine["device_count"]
    counts = [2**i for i in range(available.bit_length()) if 2**i <= available]
    return counts + ([available] if available not in counts else [])


def measure(config_dir: Path, record: dict[str, Any], devices: int | None, platform: str, timeout: float,
            cache_dir: str | None = None) -> dict[str, Any]:
    """One row in a fresh worker: `record` names the part, population and steps; on CPU
    `devices` becomes `JAX_NUM_CPU_DEVICES`, anywhere it is `jaxrl train --devices`."""
    steps = record["requested_steps_per_seed"]
    spec = {"config": str(config_dir / CONFIG), "seeds": record["population"], "steps": steps,
            "overrides": [*SPEED_ONLY, chunked(steps)], "devices": devices, "compilation_cache": cache_dir}
    env = common.jaxrl_worker_env(devices if platform == "cpu" else None, compilation_cache=cache_dir is not None)
    record["load_average_before"] = os.getloadavg()[0]
    record = common.run_jaxrl(spec, timeout, record, env)
    record["load_average_after"] = os.getloadavg()[0]
    if cache_dir:
        record["cache_files"] = sum(len(files) for _, _, files in os.walk(cache_dir))
    return record


def plan_rows(plan: Plan, parts: Sequence[str], machine: dict[str, Any]) -> list[tuple[dict[str, Any], int | None]]:
    """(record, devices) for every row of the size and devices parts, in order."""
    rows: list[tuple[dict[str, Any], int | None]] = []
    if "size" in parts:
        rows += [({"part": "size", "population": size, "requested_steps_per_seed": plan.cuts.get(size, plan.steps),
                   "cache": "off"}, None) for size in plan.sizes]
    if "devices" in parts:
        rows += [({"part": "devices", "population": plan.population, "requested_steps_per_seed": plan.device_steps,
                   "devices_requested": count, "cache": "off"}, count) for count in device_counts(plan, machine)]
    return rows


def measure_cache(plan: Plan, config_dir: Path, repeat: int, platform: str, timeout: float) -> list[dict[str, Any]]:
    """The cache part's three processes, the cold and warm ones sharing a fresh cache folder."""
    folder = tempfile.mkdtemp(prefix="jaxrl-bench-cache-")
    try:
        return [measure(config_dir, {"part": "cache", "population": plan.population, "cache": mode, "repeat": repeat,
                                     "requested_steps_per_seed": plan.cache_steps}, None, platform, timeout,
                        None if mode == "off" else folder) for mode in CACHE_MODES]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def memory(row: dict[str, Any]) -> str:
    """Peak device memory on an accelerator, else the process's peak RSS (MiB)."""
    return common.fmt(row["peak_device_mib"] if row.get("peak_device_mib") is not None else row["peak_rss_mib"])


def table(columns: Sequence[str], rows: Sequence[dict[str, Any]], lead: Callable[[dict[str, Any]], str],
          cells: Callable[[dict[str, Any]], list[str]]) -> list[str]:
    """A part's Markdown lines: the header, then per row its lead cell and its figures (or,
    for a row without figures, why)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        why = f"not measured: {str(row.get('error', row.get('status')))[:160]}"
        rest = cells(row) if row.get("status") == "ok" else ["–"] * (len(columns) - 2) + [why]
        lines.append("| " + " | ".join([lead(row), *rest]) + " |")
    return lines


def size_table(rows: list[dict[str, Any]], plan: Plan) -> list[str]:
    """The size part's lines."""
    def cells(row: dict[str, Any]) -> list[str]:
        notes = ["budget cut to keep the run short" if row["population"] in plan.cuts else "",
                 "one chunk: SPS includes first-call costs" if len(row["chunk_seconds"]) < 2 else ""]
        return [str(row["devices_used"]), f"{row['env_steps_per_seed']:,}", f"{row['compile_seconds']:.1f}",
                f"{row['steady_sps']:,.0f}", f"{row['steady_sps'] / row['population']:,.0f}", memory(row),
                "; ".join(filter(None, notes))]

    return table(["population", "devices", "env steps / member", "compile s", "steady SPS (all members)",
                  "SPS per member", "peak memory MiB", "note"], rows, lambda row: f"{row['population']:,}", cells)


def devices_table(rows: list[dict[str, Any]]) -> list[str]:
    """The devices part's lines, each row's SPS also relative to the one-device row."""
    base = next((r for r in rows if r.get("status") == "ok" and r["devices_used"] == 1), None)

    def cells(row: dict[str, Any]) -> list[str]:
        return [str(row["devices_used"]), f"{row['population']:,}", f"{-(-row['population'] // row['devices_used']):,}",
                f"{row['env_steps_per_seed']:,}", f"{row['compile_seconds']:.1f}", f"{row['steady_sps']:,.0f}",
                f"{row['steady_sps'] / base['steady_sps']:.2f}×" if base else "–", memory(row)]

    return table(["devices requested", "devices used", "population", "members per device", "env steps / member",
                  "compile s", "steady SPS (all members)", "vs 1 device", "peak memory MiB"], rows,
                 lambda row: str(row["devices_requested"]), cells)


def cache_table(rows: list[dict[str, Any]]) -> list[str]:
    """The cache part's lines, each row's compile seconds against the cold run's."""
    cold = next((r for r in rows if r.get("status") == "ok" and r["cache"] == "cold"), None)

    def cells(row: dict[str, Any]) -> list[str]:
        hits = "–" if row["cache"] == "off" else f"{row['cache_hits']} / {row['cache_misses']}"
        return [f"{row['population']:,}", f"{row['compile_seconds']:.2f}",
                f"{cold['compile_seconds'] / row['compile_seconds']:.2f}×" if cold else "–", hits,
                str(row.get("cache_files", "–")), f"{row['steady_sps']:,.0f}", memory(row)]

    return table(["run", "population", "compile s", "cold / this", "cache hits / misses", "cache files after",
                  "steady SPS (all members)", "peak memory MiB"], rows, lambda row: CACHE_MODES[row["cache"]], cells)


def rows_of(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (part, population, devices, cache mode), medians over its repeats, in order."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["part"], run["population"], run.get("devices_requested"), run["cache"]), []).append(run)
    return [common.median_of(group) for group in groups.values()]


def render(machine: dict[str, Any], budget: common.Budget, plan: Plan, runs: Sequence[dict[str, Any]]) -> str:
    """The suite's Markdown report: one table per part measured."""
    loads = [r[k] for r in runs for k in ("load_average_before", "load_average_after") if k in r]
    lines = common.header("Scale: population size, device count, compilation cache (PPO CartPole-v1)",
                          machine, budget, [
        f"each row: `configs/{CONFIG}` (8 envs × 64 steps per member and update) trained by `jaxrl train`'s code "
        f"in a fresh process with `seeds` and `total_env_steps` set, `{' '.join(SPEED_ONLY)}` and five chunks",
        "compile s: init, the training chunk and the evaluator; steady SPS leaves out compile, the first chunk "
        "and evaluation; memory: the process's peak RSS on CPU, the largest device's peak on an accelerator",
        *([f"1-minute load average {min(loads):.1f}–{max(loads):.1f} during the run"] if loads else []),
    ])
    tables = {"size": lambda rs: size_table(rs, plan), "devices": devices_table, "cache": cache_table}
    rows = rows_of(runs)
    for part in ROWS:
        mine = [row for row in rows if row["part"] == part.name]
        if mine:
            lines += [f"## {part.title}", "", *tables[part.name](mine), ""]
    return "\n".join(lines).rstrip() + "\n"


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = (), config_dir: Path | None = None) -> list[Path]:
    """Measures each part (or `only` those), rewriting `scale.md/.json` after every row, and
    prints the report."""
    from jaxrl.bench import configs_folder

    config_dir = config_dir or configs_folder()
    parts = only or [part.name for part in ROWS]
    plan = PLANS[(budget.name, platform_class(machine["platform"]))]
    runs: list[dict[str, Any]] = []

    def report() -> list[Path]:
        payload = {"machine": machine, "budget": budget._asdict(), "plan": plan._asdict(), "runs": runs}
        return common.write_report(out_dir, "scale", render(machine, budget, plan, runs), payload)

    written = report()
    for record, devices in plan_rows(plan, parts, machine):
        for repeat in range(budget.repeats):
            common.progress(f"{record['part']}: {record['population']} members x "
                            f"{record['requested_steps_per_seed']:,} steps, devices {devices or 'all'}")
            runs.append(measure(config_dir, record | {"repeat": repeat}, devices, machine["platform"], timeout))
        written = report()
    if "cache" in parts:
        for repeat in range(budget.repeats):
            common.progress(f"cache: no cache, cold, warm ({repeat + 1}/{budget.repeats})")
            runs += measure_cache(plan, config_dir, repeat, machine["platform"], timeout)
            written = report()
    print(render(machine, budget, plan, runs))
    return written
