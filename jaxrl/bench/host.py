"""The `host` suite: random-action steps/s of one gymnasium env (LunarLander-v3) in a batch,
stepped by gymnasium's `SyncVectorEnv` and `AsyncVectorEnv` (a process per env), by jaxrl's
host backends (`GymnasiumPool` with each worker count, `EnvPoolBatch`: what `jaxrl train`
steps host envs with) and by raw EnvPool's own step loop, at several batch sizes.

Each row is a fresh `jaxrl.bench.host_worker` process: build and reset the batch, warm up,
then timed windows of batched steps; steady SPS is the median window in env steps per second.
Raw EnvPool and `EnvPoolBatch` share one process and take turns window by window, so their
ratio is the median of per-window ratios.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jaxrl.bench import common

ENV = "LunarLander-v3"  # a gymnasium id that EnvPool also ships


class System(NamedTuple):
    """One way of stepping a batch of envs."""

    name: str
    title: str
    extra: str | None = None  # the jaxrl extra it needs beyond the env's


ROWS = (
    System("sync", "gymnasium SyncVectorEnv"),
    System("async", "gymnasium AsyncVectorEnv (1 process/env)"),
    System("pool", "jaxrl GymnasiumPool"),
    System("envpool", "raw EnvPool (its own step loop)", "envpool"),
    System("envpool-batch", "jaxrl EnvPoolBatch", "envpool"),
)
PAIRED = ("envpool", "envpool-batch")  # measured in one process, in turns
BASELINES = {"pool": "async", "envpool-batch": "envpool"}  # ratio columns


class Plan(NamedTuple):
    """A budget: batch sizes, GymnasiumPool worker counts, and the windows of each row."""

    num_envs: tuple[int, ...]
    workers: tuple[int, ...]
    window_env_steps: int  # env steps per timed window...
    min_window_steps: int  # ...but at least this many batched steps
    warmup: int  # untimed batched steps first
    windows: int


PLANS = {
    "tiny": Plan((4,), (1,), 200, 10, 2, 2),
    "quick": Plan((16, 64), (1, 2), 10_000, 20, 20, 3),
    "full": Plan((16, 64, 256), (1, 2, 4), 40_000, 50, 50, 7),
}


def window_steps(plan: Plan, num_envs: int) -> int:
    """Batched steps per timed window at this batch size."""
    return max(plan.min_window_steps, plan.window_env_steps // num_envs)


def entries(plan: Plan, systems: Sequence[str]) -> list[tuple[tuple[str, ...], int, int]]:
    """(systems measured together, num_envs, workers) per process, batch size by batch size;
    raw EnvPool and EnvPoolBatch form one entry when both are measured."""
    paired = all(system in systems for system in PAIRED)
    out = []
    for num_envs in plan.num_envs:
        for system in systems:
            if paired and system in PAIRED:
                if system == PAIRED[0]:
                    out.append((PAIRED, num_envs, 0))
                continue
            out += [((system,), num_envs, workers) for workers in (plan.workers if system == "pool" else (0,))]
    return out


def measure(systems: tuple[str, ...], num_envs: int, workers: int, plan: Plan, repeat: int,
            timeout: float) -> list[dict[str, Any]]:
    """One process measuring `systems`; a record per system, with its windows or the reason."""
    spec = {"env": ENV, "systems": list(systems), "num_envs": num_envs, "workers": workers,
            "window_steps": window_steps(plan, num_envs), "warmup": plan.warmup, "windows": plan.windows}
    result = common.run_in_process([sys.executable, "-m", "jaxrl.bench.host_worker", json.dumps(spec)],
                                   common.jaxrl_worker_env(), timeout, {})
    records = []
    for system in systems:
        record = {"system": system, "num_envs": num_envs, "workers": workers if system == "pool" else None,
                  "repeat": repeat, "window_steps": spec["window_steps"], "status": result["status"]}
        records.append(record | (result[system] if result["status"] == "ok" else {"error": result["error"]}))
    if len(records) == 2 and all(record["status"] == "ok" for record in records):
        records[1]["paired_ratios"] = [b / a for a, b in zip(records[0]["window_sps"], records[1]["window_sps"])]
    return records


def rows_of(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (system, num_envs, workers): the windows of every repeat together."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["system"], run["num_envs"], run["workers"]), []).append(run)
    rows = []
    for group in groups.values():
        ok = [run for run in group if run["status"] == "ok"]
        if not ok:
            rows.append(group[0])
            continue
        windows = [sps for run in ok for sps in run["window_sps"]]
        paired = [ratio for run in ok for ratio in run.get("paired_ratios", ())]
        rows.append({**ok[0], "window_sps": windows, "steady_sps": statistics.median(windows),
                     "setup_seconds": statistics.median(run["setup_seconds"] for run in ok),
                     "paired_ratio": statistics.median(paired) if paired else None})
    return rows


def ratio_cell(row: dict[str, Any], rows: Sequence[dict[str, Any]], baseline: str) -> str:
    """This row's SPS over `baseline`'s at the same batch size, on the rows compared with it
    (a paired row: the median of its per-window ratios)."""
    if BASELINES.get(row["system"]) != baseline:
        return "–"
    if row.get("paired_ratio") is not None:
        return f"{row['paired_ratio']:.2f}×"
    other = next((r for r in rows if (r["system"], r["num_envs"]) == (baseline, row["num_envs"])
                  and r["status"] == "ok"), None)
    return f"{row['steady_sps'] / other['steady_sps']:.2f}×" if other else "–"


def row_cells(row: dict[str, Any], rows: Sequence[dict[str, Any]]) -> str:
    """One Markdown table line."""
    title = next(s.title for s in ROWS if s.name == row["system"])
    name = title + (f", {row['workers']} worker(s)" if row["system"] == "pool" else "")
    if row["status"] != "ok":
        return f"| {name} | {row['num_envs']} | – | – | – | – | not measured: {str(row.get('error'))[:160]} |"
    return (f"| {name} | {row['num_envs']} | {row['steady_sps']:,.0f} "
            f"| {min(row['window_sps']):,.0f}–{max(row['window_sps']):,.0f} | {row['setup_seconds']:.2f} "
            f"| {ratio_cell(row, rows, 'async')} | {ratio_cell(row, rows, 'envpool')} |")


def render(machine: dict[str, Any], budget: common.Budget, plan: Plan, runs: Sequence[dict[str, Any]]) -> str:
    """The suite's Markdown report."""
    windows = ", ".join(f"{n}: {window_steps(plan, n)}" for n in plan.num_envs)
    lines = common.header(f"Host envs: {ENV}, random actions", machine, budget, [
        f"versions: gymnasium {common.package_version('gymnasium')}, envpool {common.package_version('envpool')}",
        f"per process: {plan.warmup} untimed batched steps, then {plan.windows} timed window(s) of batched steps "
        f"(num_envs: steps per window — {windows}); steady SPS is the median window over every process of the "
        "row, in env steps/s",
        "setup s: building the batch and its first reset (imports excluded); gymnasium's vector envs use their "
        "default next-step auto-reset, jaxrl's backends reset in the step an episode ends",
    ])
    lines += ["| system | num_envs | steady SPS | window min–max | setup s | vs AsyncVectorEnv | vs raw EnvPool |",
              "|---|---|---|---|---|---|---|"]
    rows = rows_of(runs)
    lines += [row_cells(row, rows) for row in rows]
    return "\n".join(lines) + "\n"


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = ()) -> list[Path]:
    """Measures every system (or `only` those) at every batch size, rewriting `host.md/.json`
    after each process, and prints the table."""
    plan = PLANS[budget.name]
    systems = [s.name for s in ROWS if not only or s.name in only]
    unavailable = {s.name: why for s in ROWS if (why := common.missing_extra("box2d") or common.missing_extra(s.extra))}
    runs: list[dict[str, Any]] = []
    written: list[Path] = []
    for together, num_envs, workers in entries(plan, systems):
        for repeat in range(budget.repeats):
            common.progress(f"{' + '.join(together)}: {num_envs} envs" + (f", {workers} worker(s)" if workers else ""))
            why = next((unavailable[s] for s in together if s in unavailable), None)
            if why:
                runs += [{"system": s, "num_envs": num_envs, "workers": workers if s == "pool" else None,
                          "repeat": repeat, "status": "unavailable", "error": why} for s in together]
            else:
                runs += measure(together, num_envs, workers, plan, repeat, timeout)
        written = common.write_report(out_dir, "host", render(machine, budget, plan, runs),
                                      {"machine": machine, "budget": budget._asdict(), "plan": plan._asdict(),
                                       "runs": runs})
    print(render(machine, budget, plan, runs))
    return written
