"""Host env throughput: random-action steps/s of gymnasium's vector envs, jaxrl's host backends
and raw EnvPool on one env (LunarLander-v3 by default) for several batch sizes.

Every (system, num_envs) row runs in a fresh subprocess (this file with `--worker`): it builds
the batch, takes `--warmup` untimed batched steps, then `--repeats` timed windows of `--steps`
batched steps each with pre-drawn random actions; the row reports the median window.

    python benchmarks/host_env_throughput.py --num-envs 16 64 256 --workers 1 2 4 --repeats 3
    python benchmarks/host_env_throughput.py --num-envs 16 --steps 50 --repeats 1 --out /tmp/hostbench

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import ppo_throughput as common  # noqa: E402  (machine description and result-line prefix)

REPO = HERE.parent
OUTPUT_NAME = "host_env_throughput"
SYSTEMS = ("sync", "async", "pool", "envpool", "envpool-batch")
LABELS = {"sync": "gymnasium SyncVectorEnv", "async": "gymnasium AsyncVectorEnv (1 process/env)",
          "pool": "jaxrl GymnasiumPool", "envpool": "raw EnvPool (sync step loop)",
          "envpool-batch": "jaxrl EnvPoolBatch"}
VERSIONS = ("gymnasium", "envpool", "numpy", "box2d", "jaxrl")

Stepper = tuple[Callable[[Any], Any], Callable[[], None]]


# ----------------------------------------------------------------------------- worker side


def random_actions(space: Any, count: int, num_envs: int, seed: int) -> Any:
    """`count` batches of uniform random actions for a Discrete or Box space, drawn up front
    so the timed loop measures the envs, not the random number generator."""
    import gymnasium
    import numpy as np

    rng = np.random.default_rng(seed)
    if isinstance(space, gymnasium.spaces.Discrete):
        return (space.start + rng.integers(0, space.n, (count, num_envs))).astype(np.int32)
    shape = (count, num_envs) + tuple(space.shape)
    return rng.uniform(space.low, space.high, shape).astype(space.dtype)


def preload(system: str) -> None:
    """Imports what `system` needs, so its setup time counts building envs, not imports
    (EnvPool imports JAX for its XLA interface; GymnasiumPool imports jaxrl)."""
    import gymnasium  # noqa: F401

    if system in ("envpool", "envpool-batch"):
        import envpool  # noqa: F401
    if system == "pool":
        import jaxrl.envs.host.gymnasium_pool  # noqa: F401
    if system == "envpool-batch":
        import jaxrl.envs.host.envpool_backend  # noqa: F401


def build(system: str, env_id: str, num_envs: int, workers: int, seed: int) -> Stepper:
    """Builds and resets one batch of envs; returns its step function and its close."""
    import gymnasium
    import numpy as np

    seeds = seed + np.arange(num_envs)
    if system in ("sync", "async"):
        vector = gymnasium.vector.SyncVectorEnv if system == "sync" else gymnasium.vector.AsyncVectorEnv
        env = vector([partial(gymnasium.make, env_id)] * num_envs)
        env.reset(seed=seeds.tolist())
        return env.step, env.close
    if system == "pool":
        from jaxrl.envs.host.gymnasium_pool import GymnasiumPool

        pool = GymnasiumPool(env_id, num_envs, num_workers=workers)
        pool.reset(seeds)
        return pool.step, pool.close
    if system == "envpool":
        import envpool

        env = envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, seed=seed)
        env.reset()
        return env.step, env.close
    if system == "envpool-batch":
        from jaxrl.envs.host.envpool_backend import EnvPoolBatch

        batch = EnvPoolBatch(env_id, num_envs, seed=seed)
        batch.reset(seeds)
        return batch.step, batch.close
    raise ValueError(f"unknown system {system!r}")


def measure(systems: list[str], env_id: str, num_envs: int, workers: int, steps: int, warmup: int,
            repeats: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Steady batched-step throughput of each system: warm-up untimed, then `repeats` windows.
    Several systems in one process take turns window by window, so a drifting machine load
    hits them alike and the per-window ratios stay fair."""
    import gymnasium

    probe = gymnasium.make(env_id)
    actions = random_actions(probe.action_space, warmup + repeats * steps, num_envs, seed)
    probe.close()
    built, setup = {}, {}
    try:
        for system in systems:
            preload(system)
            start = time.perf_counter()
            built[system] = build(system, env_id, num_envs, workers, seed)
            setup[system] = time.perf_counter() - start
        for step, _ in built.values():
            for action in actions[:warmup]:
                step(action)
        windows: dict[str, list[float]] = {system: [] for system in systems}
        for r in range(repeats):
            for system, (step, _) in built.items():
                begin = time.perf_counter()
                for action in actions[warmup + r * steps: warmup + (r + 1) * steps]:
                    step(action)
                windows[system].append(steps * num_envs / (time.perf_counter() - begin))
    finally:
        for _, close in built.values():
            close()
    results = {system: {"steady_sps": statistics.median(windows[system]), "window_sps": windows[system],
                        "setup_seconds": setup[system]} for system in systems}
    if len(systems) == 2:  # the second against the first, window by window
        first, second = systems
        results[second]["paired_ratio"] = statistics.median(
            b / a for a, b in zip(windows[first], windows[second]))
    return results


def run_worker(args: argparse.Namespace) -> None:
    """Measures one (systems, num_envs, workers) entry in this process; prints one JSON line."""
    result = measure(args.worker.split(","), args.env, args.worker_num_envs, args.worker_workers,
                     steps_for(args, args.worker_num_envs), args.warmup, args.repeats)
    print(common.RESULT_PREFIX + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- parent side


def steps_for(args: argparse.Namespace, num_envs: int) -> int:
    """Batched steps per timed window: `--steps`, or enough for `--env-steps` env steps."""
    return args.steps if args.steps else max(50, args.env_steps // num_envs)


def machine_info() -> dict[str, Any]:
    """CPU, core count, date and the versions that matter here, for the report header."""
    return {"cpu_model": common.cpu_model(), "cpu_count": os.cpu_count(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "versions": {name: common.package_version(name) for name in VERSIONS}}


def measure_in_subprocess(args: argparse.Namespace, systems: str, num_envs: int,
                          workers: int) -> list[dict[str, Any]]:
    """Runs one entry (one system, or comma-joined systems measured in turns) in a fresh
    Python process; returns a row per system, with its result or an error record."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", systems, "--env", args.env,
               "--worker-num-envs", str(num_envs), "--worker-workers", str(workers),
               "--steps", str(args.steps), "--env-steps", str(args.env_steps),
               "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    records = [{"system": system, "num_envs": num_envs, "workers": workers if system == "pool" else None,
                "steps_per_window": steps_for(args, num_envs)} for system in systems.split(",")]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return [{**r, "status": "timeout", "error": f"no result within {args.timeout:.0f} s"} for r in records]
    lines = [line for line in done.stdout.splitlines() if line.startswith(common.RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return [{**r, "status": "error", "error": f"exit {done.returncode}: " + " | ".join(tail)}
                for r in records]
    results = json.loads(lines[-1][len(common.RESULT_PREFIX):])
    return [{**r, **results[r["system"]], "status": "ok"} for r in records]


def sps_of(rows: list[dict[str, Any]], system: str, num_envs: int) -> float | None:
    """The steady SPS of `system` at `num_envs`, if it was measured."""
    for row in rows:
        if row["system"] == system and row["num_envs"] == num_envs and row.get("status") == "ok":
            return row["steady_sps"]
    return None


def ratio_cell(row: dict[str, Any], rows: list[dict[str, Any]], baseline: str) -> str:
    """This row's SPS over `baseline`'s at the same num_envs (GymnasiumPool rows against
    AsyncVectorEnv, EnvPoolBatch against raw EnvPool)."""
    mine = {"async": "pool", "envpool": "envpool-batch"}[baseline]
    other = sps_of(rows, baseline, row["num_envs"])
    if row["system"] != mine or row.get("status") != "ok" or not other:
        return "–"
    if "paired_ratio" in row:  # measured in turns with the baseline: the median window ratio
        return f"{row['paired_ratio']:.2f}×"
    return f"{row['steady_sps'] / other:.2f}×"


def table_row(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """One Markdown table line (or an error line)."""
    name = LABELS[row["system"]] + (f", {row['workers']} worker(s)" if row["system"] == "pool" else "")
    if row.get("status") != "ok":
        return f"| {name} | {row['num_envs']} | – | – | – | – | {row['status']}: {row.get('error', '')[:120]} |"
    low, high = min(row["window_sps"]), max(row["window_sps"])
    return (f"| {name} | {row['num_envs']} | {row['steady_sps']:,.0f} | {low:,.0f}–{high:,.0f} "
            f"| {row['setup_seconds']:.2f} | {ratio_cell(row, rows, 'async')} | {ratio_cell(row, rows, 'envpool')} |")


def render_markdown(machine: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    """The report: machine, versions and settings, then the table and notes."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    windows = ", ".join(f"{n}: {steps_for(args, n)}" for n in args.num_envs)
    lines = [
        f"# Host env throughput: {args.env}, random actions", "",
        f"- machine: {machine['cpu_model']}, {machine['cpu_count']} cores; date {machine['date']}",
        f"- versions: {versions}; Python {machine['python']}",
        f"- {args.warmup} untimed batched steps, then {args.repeats} timed window(s) of batched steps "
        f"(num_envs: steps per window — {windows}); steady SPS is the median window, in env steps/s", "",
        "| system | num_envs | steady SPS | window min–max | setup s | vs AsyncVectorEnv | vs raw EnvPool |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [table_row(row, rows) for row in rows]
    lines += ["", "Setup s: building the batch and its first reset (imports excluded; GymnasiumPool's "
              "spawned workers each import jaxrl and gymnasium). gymnasium's vector envs use their "
              "default next-step auto-reset; jaxrl's backends reset in the same step. Every row runs "
              "in a fresh subprocess, except that raw EnvPool and EnvPoolBatch share one and take "
              "turns window by window; their ratio is the median of the per-window ratios."]
    return "\n".join(lines) + "\n"


PAIRED = ("envpool", "envpool-batch")  # measured in one process, in turns


def plan(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """The entries to measure as (systems, num_envs, workers), systems interleaved at each size;
    raw EnvPool and EnvPoolBatch form one entry when both are asked for."""
    paired = all(system in args.systems for system in PAIRED)
    entries = []
    for num_envs in args.num_envs:
        for system in args.systems:
            if paired and system in PAIRED:
                if system == PAIRED[0]:
                    entries.append((",".join(PAIRED), num_envs, 0))
                continue
            for workers in (args.workers if system == "pool" else [0]):
                entries.append((system, num_envs, workers))
    return entries


def run_benchmark(args: argparse.Namespace) -> None:
    """Measures every row, rewriting the Markdown and JSON reports after each one."""
    machine = machine_info()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for system, num_envs, workers in plan(args):
        print(f"[{time.strftime('%H:%M:%S')}] {system} num_envs={num_envs}"
              + (f" workers={workers}" if system == "pool" else "") + " ...", file=sys.stderr, flush=True)
        for last in measure_in_subprocess(args, system, num_envs, workers):
            rows.append(last)
            print(f"    {last['system']} {last['status']}: " + (
                f"{last['steady_sps']:,.0f} SPS" if last["status"] == "ok" else last.get("error", "")),
                file=sys.stderr, flush=True)
        (out_dir / f"{OUTPUT_NAME}.md").write_text(render_markdown(machine, args, rows))
        (out_dir / f"{OUTPUT_NAME}.json").write_text(json.dumps(
            {"machine": machine, "args": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
             "rows": rows}, indent=2))
    print(render_markdown(machine, args, rows))
    print(f"wrote {out_dir / (OUTPUT_NAME + '.md')} and {out_dir / (OUTPUT_NAME + '.json')}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="LunarLander-v3", help="a gymnasium id that EnvPool also ships")
    parser.add_argument("--num-envs", type=int, nargs="+", default=[16, 64, 256], help="batch sizes")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="GymnasiumPool worker counts")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--steps", type=int, default=0,
                        help="batched steps per timed window (default: enough for --env-steps)")
    parser.add_argument("--env-steps", type=int, default=40_000,
                        help="env steps per timed window when --steps is 0 (at least 50 batched steps)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed batched steps before timing")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per row (median reported)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per row")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu-2core"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # a system, or comma-joined systems
    parser.add_argument("--worker-num-envs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-workers", type=int, default=0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
