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


def measure(system: str, env_id: str, num_envs: int, workers: int, steps: int, warmup: int,
            repeats: int, seed: int = 0) -> dict[str, Any]:
    """Steady batched-step throughput of one system: warm-up untimed, then `repeats` windows."""
    import gymnasium

    probe = gymnasium.make(env_id)
    actions = random_actions(probe.action_space, warmup + repeats * steps, num_envs, seed)
    probe.close()
    preload(system)
    start = time.perf_counter()
    step, close = build(system, env_id, num_envs, workers, seed)
    setup = time.perf_counter() - start
    try:
        for action in actions[:warmup]:
            step(action)
        windows = []
        for r in range(repeats):
            begin = time.perf_counter()
            for action in actions[warmup + r * steps: warmup + (r + 1) * steps]:
                step(action)
            windows.append(steps * num_envs / (time.perf_counter() - begin))
    finally:
        close()
    return {"steady_sps": statistics.median(windows), "window_sps": windows, "setup_seconds": setup}


def run_worker(args: argparse.Namespace) -> None:
    """Measures one (system, num_envs, workers) row in this process; prints one JSON line."""
    result = measure(args.worker, args.env, args.worker_num_envs, args.worker_workers,
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


def measure_in_subprocess(args: argparse.Namespace, system: str, num_envs: int, workers: int) -> dict[str, Any]:
    """Runs one row in a fresh Python process; returns its result or an error record."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", system, "--env", args.env,
               "--worker-num-envs", str(num_envs), "--worker-workers", str(workers),
               "--steps", str(args.steps), "--env-steps", str(args.env_steps),
               "--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    record: dict[str, Any] = {"system": system, "num_envs": num_envs,
                              "workers": workers if system == "pool" else None,
                              "steps_per_window": steps_for(args, num_envs)}
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**record, "status": "timeout", "error": f"no result within {args.timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith(common.RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {**record, "status": "error", "error": f"exit {done.returncode}: " + " | ".join(tail)}
    return {**record, **json.loads(lines[-1][len(common.RESULT_PREFIX):]), "status": "ok"}


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
              "in a fresh subprocess."]
    return "\n".join(lines) + "\n"


def plan(args: argparse.Namespace) -> list[tuple[str, int, int]]:
    """The rows to measure as (system, num_envs, workers), systems interleaved at each size."""
    rows = []
    for num_envs in args.num_envs:
        for system in args.systems:
            for workers in (args.workers if system == "pool" else [0]):
                rows.append((system, num_envs, workers))
    return rows


def run_benchmark(args: argparse.Namespace) -> None:
    """Measures every row, rewriting the Markdown and JSON reports after each one."""
    machine = machine_info()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for system, num_envs, workers in plan(args):
        print(f"[{time.strftime('%H:%M:%S')}] {system} num_envs={num_envs}"
              + (f" workers={workers}" if system == "pool" else "") + " ...", file=sys.stderr, flush=True)
        rows.append(measure_in_subprocess(args, system, num_envs, workers))
        last = rows[-1]
        print(f"    {last['status']}: " + (f"{last['steady_sps']:,.0f} SPS" if last["status"] == "ok"
                                           else last.get("error", "")), file=sys.stderr, flush=True)
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
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
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
