"""PPO CartPole-v1 throughput: jaxrl's population driver vs a PureJaxRL-style single-file PPO.

Each (system, population size, repeat) is measured in a fresh subprocess (this file run
with `--worker`), so device count, memory and compile caches never leak between rows.
The parent collects one JSON line per worker and writes a Markdown table and raw JSON.

    python benchmarks/ppo_throughput.py --seeds 1 16 64 256 --steps 500000 \
        --out benchmarks/results/cpu-2core

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from jaxrl.bench import common as bench_common

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
JAXRL_CONFIG = REPO / "configs" / "ppo_cartpole_reference.yaml"
RESULT_PREFIX = bench_common.RESULT_PREFIX
SYSTEMS = ("jaxrl", "reference")
SYSTEM_LABELS = {"jaxrl": "jaxrl (population.run)", "reference": "reference (PureJaxRL-style)"}
OUTPUT_NAME = "ppo_cartpole_throughput"


# ----------------------------------------------------------------------------- worker side


def _disable_compilation_cache() -> None:
    """Turns off JAX's persistent compilation cache so compile times are real."""
    import jax

    jax.config.update("jax_enable_compilation_cache", False)


_peak_rss_mib = bench_common.peak_rss_mib  # the benchmark scripts and `jaxrl bench` measure alike
cpu_model = bench_common.cpu_model
package_version = bench_common.package_version


def _device_info() -> dict[str, Any]:
    """The JAX platform and how many devices this process sees."""
    import jax

    devices = jax.devices()
    return {"platform": devices[0].platform, "visible_devices": len(devices),
            "device_kind": devices[0].device_kind}


def _summary(values: Sequence[float]) -> dict[str, float]:
    """Mean, min and max of per-seed values (NaNs ignored)."""
    import numpy as np

    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or np.all(np.isnan(array)):
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(np.nanmean(array)), "min": float(np.nanmin(array)),
            "max": float(np.nanmax(array))}


def measure_jaxrl(num_seeds: int, steps: int, config_path: Path = JAXRL_CONFIG,
                  overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Trains a jaxrl population from a config (the reference one by default) and returns
    its timings and returns."""
    from jaxrl import population
    from jaxrl.config import load
    from jaxrl.experiment.train import build

    config = load(config_path, [*overrides, f"seeds={num_seeds}", f"total_env_steps={steps}"])
    built = build(config)
    start = time.perf_counter()
    result = population.run(built.algo, config.seeds, seed=config.seed,
                            updates_per_chunk=built.updates_per_chunk, evaluator=built.evaluator,
                            eval_every_chunks=built.eval_every_chunks)
    wall = time.perf_counter() - start
    eval_per_seed = result.final_eval_returns.mean(axis=1).tolist()
    train_per_seed = result.reports[-1].metrics.get("episode_return")
    return {
        "compile_seconds": result.compile_seconds,
        "steady_sps": result.steady_sps,
        "wall_seconds": wall,
        "env_steps_per_seed": result.reports[-1].env_steps,
        "devices_used": result.num_devices,
        "chunks": len(result.reports),
        "return_kind": "greedy eval",
        "final_return": _summary(eval_per_seed),
        "final_return_per_seed": eval_per_seed,
        "eval_episodes_per_seed": config.eval.episodes,
        "last_chunk_training_return": _summary([] if train_per_seed is None else train_per_seed.tolist()),
    }


def measure_reference(num_seeds: int, steps: int, module: str = "reference_ppo") -> dict[str, Any]:
    """Trains a PureJaxRL-style reference (`benchmarks/<module>.py`) with jit(vmap(train)) on
    one device; AOT compile timed apart."""
    import importlib

    import jax

    sys.path.insert(0, str(HERE))
    reference = importlib.import_module(module)
    import reference_ppo

    config = {"TOTAL_TIMESTEPS": steps}
    out, compile_seconds, run_seconds = reference_ppo.timed_run(reference.make_train, config, num_seeds)
    steps_per_seed = reference.env_steps_per_seed(config)
    per_seed = reference.final_returns(out).tolist()
    return {
        "compile_seconds": compile_seconds,
        "steady_sps": steps_per_seed * num_seeds / run_seconds,
        "wall_seconds": compile_seconds + run_seconds,
        "run_seconds": run_seconds,
        "env_steps_per_seed": steps_per_seed,
        "devices_used": 1,
        "return_kind": "training return",
        "final_return": _summary(per_seed),
        "final_return_per_seed": per_seed,
    }


def run_worker(system: str, num_seeds: int, steps: int) -> None:
    """Measures one (system, population size) in this process and prints one JSON result line."""
    _disable_compilation_cache()
    measure = {"jaxrl": measure_jaxrl, "reference": measure_reference}[system]
    result = measure(num_seeds, steps)
    result.update(_device_info())
    result["peak_rss_mib"] = _peak_rss_mib()
    print(RESULT_PREFIX + json.dumps(result), flush=True)


# ----------------------------------------------------------------------------- parent side


def machine_info() -> dict[str, Any]:
    """Machine, date and library versions for the report header."""
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in ("jax", "jaxlib", "flax", "optax", "gymnax")},
    }


def worker_env(system: str) -> dict[str, str]:
    """The subprocess environment: jaxrl's CLI defaults or the reference's plain single device,
    and no persistent compilation cache."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS")}
    if system != "reference":
        from jaxrl.runtime import cpu_defaults

        cpu_defaults(environ=env)  # exactly what `jaxrl train` does by default
    else:
        env["JAX_NUM_CPU_DEVICES"] = "1"  # the reference is single-device by design
    env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    env["JAXRL_COMPILATION_CACHE"] = ""
    return env


def steps_for(num_seeds: int, steps: int, steps_for_256: int) -> int:
    """The per-seed budget: `steps`, cut to `steps_for_256` for populations of 256 or more."""
    return min(steps, steps_for_256) if num_seeds >= 256 else steps


def measure_in_subprocess(system: str, num_seeds: int, steps: int, timeout: float,
                          script: str = __file__, extra_args: Sequence[str] = ()) -> dict[str, Any]:
    """Runs one measurement in a fresh Python process (`script --worker ... extra_args`);
    returns its result or an error record."""
    command = [sys.executable, str(Path(script).resolve()), "--worker", system,
               "--worker-seeds", str(num_seeds), "--worker-steps", str(steps), *extra_args]
    record: dict[str, Any] = {"system": system, "seeds": num_seeds, "requested_steps_per_seed": steps}
    return bench_common.run_in_process(command, worker_env(system), timeout, record, cwd=REPO)


def combine_repeats(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row from repeated runs: medians of timings, max of memory, first run's returns."""
    ok = [r for r in runs if r.get("status") == "ok"]
    if not ok:
        return {**runs[0], "repeats": len(runs)}
    row = dict(ok[0])
    for key in ("compile_seconds", "steady_sps"):
        row[key] = statistics.median(r[key] for r in ok)
    row["steady_sps_range"] = [min(r["steady_sps"] for r in ok), max(r["steady_sps"] for r in ok)]
    row["peak_rss_mib"] = max(r["peak_rss_mib"] for r in ok)
    row["repeats"] = len(ok)
    return row


def format_learning(row: dict[str, Any]) -> str:
    """The learning cell: which kind of return, then its mean and min over seeds."""
    final = row["final_return"]
    if row["seeds"] == 1:
        return f"{row['return_kind']} {final['mean']:.1f}"
    return f"{row['return_kind']} mean {final['mean']:.1f}, min {final['min']:.1f}"


def ratio_cell(row: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """jaxrl / reference steady SPS at this population size, on jaxrl rows only."""
    if row["system"] != "jaxrl" or row.get("status") != "ok":
        return "–"
    for other in rows:
        if (other["system"] == "reference" and other["seeds"] == row["seeds"]
                and other.get("status") == "ok" and other["env_steps_per_seed"] == row["env_steps_per_seed"]):
            return f"{row['steady_sps'] / other['steady_sps']:.2f}×"
    return "–"


def table_row(row: dict[str, Any], rows: list[dict[str, Any]], full_steps: int) -> str:
    """One Markdown table line (or an error line) for a combined measurement."""
    name = SYSTEM_LABELS[row["system"]]
    if row.get("status") != "ok":
        return f"| {name} | {row['seeds']} | – | – | – | – | – | – | {row.get('status')}: {row.get('error', '')[:120]} |"
    mark = " †" if row["requested_steps_per_seed"] < full_steps else ""
    return (f"| {name} | {row['seeds']} | {row['devices_used']} | {row['env_steps_per_seed']:,}{mark} "
            f"| {row['compile_seconds']:.1f} | {row['steady_sps']:,.0f} | {ratio_cell(row, rows)} "
            f"| {row['peak_rss_mib']:,.0f} | {format_learning(row)} |")


def render_markdown(machine: dict[str, Any], args: argparse.Namespace, rows: list[dict[str, Any]]) -> str:
    """The whole report: header naming machine and versions, the table, and notes."""
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    platforms = sorted({f"{r['platform']} ({r.get('device_kind', '?')})" for r in rows if r.get("status") == "ok"})
    lines = [
        "# PPO CartPole-v1 throughput: jaxrl vs a PureJaxRL-style single-file PPO",
        "",
        f"- machine: {machine['cpu_model']}, {machine['cpu_count']} cores; JAX platform: "
        f"{', '.join(platforms) or 'unknown'}",
        f"- date: {machine['date']}",
        f"- versions: {versions}; Python {machine['python']}",
        f"- budget: {args.steps:,} env steps per seed (populations ≥ 256: {min(args.steps, args.steps_for_256):,}); "
        f"{args.repeats} fresh subprocess(es) per row, timings are medians",
        "- settings: 4 envs × 128 steps, 4 epochs × 4 minibatches, separate 64-64 tanh actor and critic "
        f"(jaxrl: `{JAXRL_CONFIG.relative_to(REPO)}`; reference: `benchmarks/reference_ppo.py`)",
        "",
        "| system | seeds | devices | env steps / seed | compile s | steady SPS (all seeds) "
        "| jaxrl / reference SPS | peak RSS MiB | final return |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [table_row(row, rows, args.steps) for row in rows]
    lines.append("")
    if any(row["requested_steps_per_seed"] < args.steps for row in rows):
        lines += ["† budget cut by `--steps-for-256` to keep the benchmark short; SPS is comparable "
                  "with the other rows, final returns are not.", ""]
    lines += [
        "jaxrl: `population.run` with `jaxrl train`'s CPU defaults (one device per core, Eigen threads off); "
        "compile s covers init, the training chunk and the evaluator; steady SPS excludes compile, the "
        "first chunk and evaluation; final return is the greedy evaluation "
        "(10 episodes per seed) after training. Reference: `jax.jit(jax.vmap(make_train(config)))` on one "
        "device; compile s is `lower().compile()`; steady SPS is the whole compiled run; final return is "
        "the training return (mean returned-episode return over the last update), as PureJaxRL reports it.",
    ]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, machine: dict[str, Any], args: argparse.Namespace,
                  rows: list[dict[str, Any]], raw: list[dict[str, Any]]) -> str:
    """Writes the Markdown table and the raw JSON; returns the Markdown."""
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(machine, args, rows)
    (out_dir / f"{OUTPUT_NAME}.md").write_text(markdown)
    payload = {"machine": machine, "args": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
               "rows": rows, "runs": raw}
    (out_dir / f"{OUTPUT_NAME}.json").write_text(json.dumps(payload, indent=2))
    return markdown


def run_benchmark(args: argparse.Namespace) -> None:
    """Measures every population size for every system (interleaved), rewriting outputs after each row."""
    machine = machine_info()
    out_dir = Path(args.out)
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    for num_seeds in args.seeds:
        steps = steps_for(num_seeds, args.steps, args.steps_for_256)
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.systems}
        for repeat in range(args.repeats):
            for system in args.systems:
                print(f"[{time.strftime('%H:%M:%S')}] {system}: {num_seeds} seeds x {steps:,} steps "
                      f"(repeat {repeat + 1}/{args.repeats}) ...", file=sys.stderr, flush=True)
                record = measure_in_subprocess(system, num_seeds, steps, args.timeout)
                record["repeat"] = repeat
                runs[system].append(record)
                raw.append(record)
                print(f"    {_brief(record)}", file=sys.stderr, flush=True)
        rows += [combine_repeats(runs[s]) for s in args.systems]
        write_outputs(out_dir, machine, args, rows, raw)
    print(write_outputs(out_dir, machine, args, rows, raw))
    print(f"wrote {out_dir / (OUTPUT_NAME + '.md')} and {out_dir / (OUTPUT_NAME + '.json')}", file=sys.stderr)


def _brief(record: dict[str, Any]) -> str:
    """A one-line progress note for one measurement."""
    if record.get("status") != "ok":
        return f"{record.get('status')}: {record.get('error')}"
    return (f"compile {record['compile_seconds']:.1f} s, {record['steady_sps']:,.0f} SPS, "
            f"RSS {record['peak_rss_mib']:,.0f} MiB, {record['return_kind']} "
            f"{record['final_return']['mean']:.1f} (took {record['process_seconds']:.0f} s)")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (the `--worker*` ones are for the subprocesses)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 16, 64, 256], help="population sizes")
    parser.add_argument("--steps", type=int, default=500_000, help="env steps per seed")
    parser.add_argument("--steps-for-256", type=int, default=100_000,
                        help="env steps per seed for populations of 256 or more (marked † in the table)")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--repeats", type=int, default=1, help="fresh subprocesses per row (median reported)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per measurement")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu-2core"),
                        help="folder for ppo_cartpole_throughput.md / .json")
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-seeds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is None and (min(args.seeds) < 1 or args.steps < 1 or args.repeats < 1):
        parser.error("--seeds, --steps and --repeats must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: a worker measurement, or the whole benchmark."""
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.worker_seeds, args.worker_steps)
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
