"""PPO CartPole-v1 scaling: steady SPS against population size and device count; compile cache.

Steady SPS against population size and device count, and compile time with and without
JAX's persistent compilation cache.

Every measurement runs in a fresh subprocess (this file run with `--worker`), so device
count, memory and compile caches never leak between rows; the parent collects one JSON line
per worker and writes `<out>/scale_throughput.md` and `.json`, rewritten after each row.
Rows train `configs/ppo_cartpole.yaml` (gymnax CartPole-v1) with `population.run`.

    python benchmarks/scale_throughput.py --out benchmarks/results/cpu-2core   # ~25 min, 2 cores
    python benchmarks/scale_throughput.py --smoke --out /tmp/scale_smoke          # ~2 min
    python benchmarks/scale_throughput.py --steps 500000    # GPU: writes results/gpu-<kind>/

See benchmarks/README.md for what each column means.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dqn_throughput  # noqa: E402  (its --budgets parser)
import ppo_throughput as common  # noqa: E402  (shared worker, header and repeat machinery)

from jaxrl.bench import common as bench_common  # noqa: E402

REPO = HERE.parent
CONFIG = REPO / "configs" / "ppo_cartpole.yaml"
OUTPUT_NAME = "scale_throughput"
PARTS = ("size", "devices", "cache")
CACHE_MODES = ("off", "cold", "warm")  # off: no persistent cache; cold/warm: a shared fresh dir
CACHE_LABELS = {"off": "no cache (`jax_enable_compilation_cache=False`)",
                "cold": "cold (empty cache dir)", "warm": "warm (same dir, fresh process)"}
DEFAULTS = {"sizes": [1, 4, 16, 64, 256, 1024, 4096], "steps": 100_000, "steps_for_large": 20_000,
            "budgets": ["4096:10752"], "fixed_population": 256, "device_steps": 30_720,
            "cache_steps": 10_752}
# On a GPU the CPU-only cuts are off: large populations and the devices part get `--steps`.
GPU_DEFAULTS = {"steps_for_large": None, "budgets": [], "device_steps": None}
SMOKE = {"sizes": [1, 4], "devices": [1, 2], "steps": 4096, "steps_for_large": 4096, "budgets": [],
         "fixed_population": 16, "device_steps": 4096, "cache_steps": 4096}


# ----------------------------------------------------------------------------- worker side


def _configure_cache(mode: str, cache_dir: str | None) -> None:
    """`off`: no persistent cache; otherwise cache every compile (however short) in `cache_dir`."""
    import jax

    if mode == "off":
        common._disable_compilation_cache()
        return
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


def probe_worker() -> None:
    """Prints the platform and devices a default worker sees."""
    import jax

    devices = jax.devices()
    print(common.RESULT_PREFIX + json.dumps({
        "platform": devices[0].platform, "device_count": len(devices),
        "device_kind": devices[0].device_kind}), flush=True)


def train_worker(num_members: int, steps: int, num_devices: int, cache: str, cache_dir: str | None) -> None:
    """Trains one population on the first `num_devices` devices (0: all) and prints one JSON line.

    The parent already put `jaxrl.runtime.cpu_defaults(num_devices)` into this process's
    environment; calling it again before jax is imported only fills in what is missing.
    """
    from jaxrl.runtime import cpu_defaults

    cpu_defaults(num_devices or None)  # a no-op when the parent set it; must precede `import jax`
    import jax

    _configure_cache(cache, cache_dir)
    from jaxrl.runtime import CompileCacheStats

    counts = CompileCacheStats()  # from now on, in this process
    from jaxrl import config as config_lib
    from jaxrl import population
    from jaxrl.experiment.train import build

    devices = jax.devices()
    if num_devices > len(devices):
        raise SystemExit(f"asked for {num_devices} devices, this process sees {len(devices)}")
    devices = devices[:num_devices] if num_devices else devices
    config = config_lib.load(CONFIG, [f"seeds={num_members}", f"total_env_steps={steps}"])
    built = build(config)
    start = time.perf_counter()
    result = population.run(built.algo, num_members, seed=0, updates_per_chunk=built.updates_per_chunk,
                            devices=devices)
    wall = time.perf_counter() - start
    returns = result.reports[-1].metrics.get("episode_return")
    record = {
        "compile_seconds": result.compile_seconds,
        "steady_sps": result.steady_sps,
        "wall_seconds": wall,
        "env_steps_per_seed": result.reports[-1].env_steps,
        "devices_used": result.num_devices,
        "devices_given": len(devices),
        "chunks": len(result.reports),
        "chunk_seconds": [report.seconds for report in result.reports],
        "updates_per_chunk": built.updates_per_chunk,
        "env_steps_per_update": built.algo.env_steps_per_update,
        "last_chunk_training_return": common._summary([] if returns is None else returns.tolist()),
        "cache_hits": counts.hits,
        "cache_misses": counts.misses,
        "compile_seconds_saved": counts.seconds_saved,
        **common._device_info(),
        "peak_rss_mib": common._peak_rss_mib(),
        "peak_device_mib": bench_common.device_peak_mib(devices),
    }
    if cache_dir:
        record["cache_files"] = sum(len(files) for _, _, files in os.walk(cache_dir))
    print(common.RESULT_PREFIX + json.dumps(record), flush=True)


# ----------------------------------------------------------------------------- parent side


def worker_env(num_devices: int | None, cache: str) -> dict[str, str]:
    """`jaxrl train`'s CPU defaults for `num_devices` CPU devices (None: one per core), with the
    persistent cache off unless this worker measures it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("JAX_NUM_CPU_DEVICES", "XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR",
                        "JAX_ENABLE_COMPILATION_CACHE")}
    from jaxrl.runtime import cpu_defaults

    cpu_defaults(num_devices, environ=env)
    env["JAXRL_COMPILATION_CACHE"] = ""
    if cache == "off":
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return env


def run_worker_process(worker_args: Sequence[str], env: dict[str, str], timeout: float,
                       record: dict[str, Any]) -> dict[str, Any]:
    """Runs `this file --worker ...` in a fresh process; `record` gains its result or an error."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", *worker_args]
    record["load_average_before"] = os.getloadavg()[0]
    record = bench_common.run_in_process(command, env, timeout, record, cwd=REPO)
    record["load_average_after"] = os.getloadavg()[0]
    return record


def probe(timeout: float) -> dict[str, Any]:
    """Platform, device count and device kind of a default worker (no jax in this process)."""
    record = run_worker_process(["probe"], worker_env(None, "off"), timeout, {})
    if record.get("status") != "ok":
        raise SystemExit(f"could not start a JAX worker: {record.get('error')}")
    return record


def measure(part: str, num_members: int, steps: int, num_devices: int, timeout: float,
            cache: str = "off", cache_dir: str | None = None) -> dict[str, Any]:
    """One training measurement in a fresh subprocess. On CPU, `num_devices` (0: one per core)
    becomes `JAX_NUM_CPU_DEVICES`; on a GPU it takes the first `num_devices` GPUs."""
    args = ["train", "--worker-seeds", str(num_members), "--worker-steps", str(steps),
            "--worker-devices", str(num_devices), "--worker-cache", cache]
    if cache_dir:
        args += ["--worker-cache-dir", cache_dir]
    record = {"part": part, "population": num_members, "requested_steps_per_seed": steps,
              "devices_requested": num_devices or None, "cache": cache}
    return run_worker_process(args, worker_env(num_devices or None, cache), timeout, record)


def size_budget(num_members: int, args: argparse.Namespace) -> int:
    """Env steps per member for the size part: `--budgets`, else `--steps` cut to
    `--steps-for-large` from `--large-from` members up."""
    budgets = dqn_throughput.parse_budgets(args.budgets)
    if num_members in budgets:
        return budgets[num_members]
    return min(args.steps, args.steps_for_large) if num_members >= args.large_from else args.steps


def _brief(record: dict[str, Any]) -> str:
    if record.get("status") != "ok":
        return f"{record.get('status')}: {record.get('error')}"
    hits = f", cache hits {record['cache_hits']} / misses {record['cache_misses']}" if record["cache"] != "off" else ""
    return (f"{record['devices_used']} device(s), compile {record['compile_seconds']:.1f} s, "
            f"{record['steady_sps']:,.0f} SPS, RSS {record['peak_rss_mib']:,.0f} MiB{hits} "
            f"(took {record['process_seconds']:.0f} s, load {record['load_average_before']:.1f})")


def _repeat(part: str, label: str, args: argparse.Namespace, **kwargs: Any) -> list[dict[str, Any]]:
    runs = []
    for repeat in range(args.repeats):
        print(f"[{time.strftime('%H:%M:%S')}] {part}: {label} (repeat {repeat + 1}/{args.repeats}) ...",
              file=sys.stderr, flush=True)
        record = measure(part, timeout=args.timeout, **kwargs)
        record["repeat"] = repeat
        print(f"    {_brief(record)}", file=sys.stderr, flush=True)
        runs.append(record)
    return runs


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row: `ppo_throughput.combine_repeats` (medians, max RSS) plus cache counters."""
    row = common.combine_repeats(runs)
    ok = [r for r in runs if r.get("status") == "ok"]
    if ok and ok[0].get("peak_device_mib") is not None:
        row["peak_device_mib"] = max(r["peak_device_mib"] for r in ok)
    return row


# ----------------------------------------------------------------------------- report


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _fail(row: dict[str, Any], cells: int) -> str:
    return " – |" * cells + f" {row.get('status')}: {str(row.get('error', ''))[:160]} |"


def size_table(rows: list[dict[str, Any]], args: argparse.Namespace, gpu: bool) -> list[str]:
    lines = ["## Steady SPS against population size", "",
             "All devices; one row per population size.", "",
             "| population | devices | env steps / member | compile s | steady SPS (all members) "
             "| SPS per member | peak RSS MiB" + (" | peak GPU MiB" if gpu else "") + " | note |",
             "|---|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|"]
    budgets = dqn_throughput.parse_budgets(args.budgets)
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"| {row['population']} |" + _fail(row, 6 + gpu))
            continue
        note = ""
        if row["population"] in budgets:
            note = "‡ budget set by `--budgets` to keep the run short"
        elif row["requested_steps_per_seed"] < args.steps:
            note = "† `--steps-for-large`"
        if row["chunks"] < 2:
            note = (note + "; " if note else "") + "one chunk: SPS includes first-call costs"
        lines.append(
            f"| {row['population']:,} | {row['devices_used']} | {row['env_steps_per_seed']:,} "
            f"| {row['compile_seconds']:.1f} | {row['steady_sps']:,.0f} "
            f"| {row['steady_sps'] / row['population']:,.0f} | {row['peak_rss_mib']:,.0f}"
            + (f" | {_mib(row.get('peak_device_mib'))}" if gpu else "") + f" | {note} |")
    return lines + [""]


def devices_table(rows: list[dict[str, Any]], gpu: bool) -> list[str]:
    how = ("the first d GPUs of the machine" if gpu else
           "`JAX_NUM_CPU_DEVICES=d` (`jaxrl.runtime.cpu_defaults(d)`: Eigen threads off) in a fresh process")
    lines = ["## Steady SPS against device count", "",
             f"A fixed population on d devices: {how}.", "",
             "| devices requested | devices used | population | members per device | env steps / member "
             "| compile s | steady SPS (all members) | SPS per member | vs 1 device | peak RSS MiB"
             + (" | peak GPU MiB" if gpu else "") + " |",
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if gpu else "")]
    base = next((r for r in rows if r.get("status") == "ok" and r["devices_used"] == 1), None)
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"| {row['devices_requested']} |" + _fail(row, 8 + gpu))
            continue
        ratio = f"{row['steady_sps'] / base['steady_sps']:.2f}×" if base else "–"
        lines.append(
            f"| {row['devices_requested']} | {row['devices_used']} | {row['population']:,} "
            f"| {-(-row['population'] // row['devices_used']):,} | {row['env_steps_per_seed']:,} "
            f"| {row['compile_seconds']:.1f} | {row['steady_sps']:,.0f} "
            f"| {row['steady_sps'] / row['population']:,.0f} | {ratio} | {row['peak_rss_mib']:,.0f}"
            + (f" | {_mib(row.get('peak_device_mib'))}" if gpu else "") + " |")
    return lines + [""]


def cache_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["## Compile time with and without the persistent compilation cache", "",
             "Fresh processes on all devices; `cold` and `warm` share one fresh temporary cache dir "
             "(`jax_compilation_cache_dir`, `jax_persistent_cache_min_compile_time_secs=0`), `cold` "
             "filling it and `warm` reading it.", "",
             "| run | population | devices | compile s | cold / this | cache hits / misses "
             "| cache files after | steady SPS (all members) | peak RSS MiB |",
             "|---|---|---|---|---|---|---|---|---|"]
    cold = next((r for r in rows if r.get("status") == "ok" and r["cache"] == "cold"), None)
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"| {CACHE_LABELS[row['cache']]} |" + _fail(row, 7))
            continue
        ratio = f"{cold['compile_seconds'] / row['compile_seconds']:.2f}×" if cold else "–"
        hits = "–" if row["cache"] == "off" else f"{row['cache_hits']} / {row['cache_misses']}"
        lines.append(
            f"| {CACHE_LABELS[row['cache']]} | {row['population']:,} | {row['devices_used']} "
            f"| {row['compile_seconds']:.2f} | {ratio} | {hits} | {row.get('cache_files', '–')} "
            f"| {row['steady_sps']:,.0f} | {row['peak_rss_mib']:,.0f} |")
    return lines + [""]


def hardware(machine: dict[str, Any], info: dict[str, Any]) -> str:
    """The hardware line: the GPU (when the workers run on one) and the host CPU."""
    cpu = f"{machine['cpu_model']}, {machine['cpu_count']} cores"
    if info["platform"] == "cpu":
        return f"{cpu}; JAX platform cpu, {info['device_count']} CPU devices by default"
    return (f"{info['device_count']} × {info['device_kind']} (JAX platform {info['platform']}); "
            f"host CPU {cpu}")


def budget_summary(args: argparse.Namespace) -> str:
    """The per-member budgets of each part, in words."""
    size = f"{args.steps:,}"
    if args.steps_for_large < args.steps:
        size += f", {args.steps_for_large:,} from {args.large_from:,} members up (†)"
    cuts = dqn_throughput.parse_budgets(args.budgets)
    if cuts:
        size += ", " + ", ".join(f"{steps:,} at {members:,} members (‡)" for members, steps in cuts.items())
    return (f"size part {size}; devices part {args.device_steps:,} at {args.fixed_population:,} members; "
            f"cache part {args.cache_steps:,} at {args.fixed_population:,} members")


def render_markdown(machine: dict[str, Any], info: dict[str, Any], args: argparse.Namespace,
                    rows: list[dict[str, Any]], raw: list[dict[str, Any]]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    gpu = info["platform"] != "cpu"
    loads = [r[k] for r in raw for k in ("load_average_before", "load_average_after") if k in r]
    load = f"; 1-minute load average {min(loads):.1f}–{max(loads):.1f} during the run" if loads else ""
    first_ok = next((r for r in rows if r.get("status") == "ok"), None)
    chunk = ""
    if first_ok:
        per_chunk = first_ok["updates_per_chunk"] * first_ok["env_steps_per_update"]
        chunk = f"{first_ok['updates_per_chunk']} updates ({per_chunk:,} env steps per member) per compiled chunk"
    lines = [
        "# PPO CartPole-v1 scaling: population size, device count, compile cache", "",
        f"- hardware: {hardware(machine, info)}",
        f"- date: {machine['date']}" + (f" — {args.note}" if args.note else "") + load,
        f"- versions: {versions}; Python {machine['python']}",
        f"- config: `{CONFIG.relative_to(REPO)}` (gymnax CartPole-v1, 8 envs × 64 steps per member and "
        "update, 4 epochs × 4 minibatches, 64-64 tanh actor-critic) with `seeds` and `total_env_steps` "
        f"overridden; `population.run(..., seed=0)` without an evaluator; {chunk}",
        f"- budgets (env steps per member, whole updates only): {budget_summary(args)}",
        f"- {args.repeats} fresh subprocess(es) per row, timings are medians; compile s is "
        "`Population.compile_seconds` (lower + compile of init and the training chunk); steady SPS "
        "excludes compile and the first chunk", "",
    ]
    for part, render in (("size", lambda rs: size_table(rs, args, gpu)),
                         ("devices", lambda rs: devices_table(rs, gpu)), ("cache", cache_table)):
        part_rows = [r for r in rows if r["part"] == part]
        if part_rows:
            lines += render(part_rows)
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Path, machine: dict[str, Any], info: dict[str, Any], args: argparse.Namespace,
                  rows: list[dict[str, Any]], raw: list[dict[str, Any]]) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(machine, info, args, rows, raw)
    (out_dir / f"{OUTPUT_NAME}.md").write_text(markdown)
    payload = {"machine": machine, "platform": info,
               "args": {k: v for k, v in vars(args).items() if not k.startswith("worker")},
               "rows": rows, "runs": raw}
    (out_dir / f"{OUTPUT_NAME}.json").write_text(json.dumps(payload, indent=2))
    return markdown


def default_out(info: dict[str, Any]) -> Path:
    """benchmarks/results/cpu-<cores>core on CPU, gpu-<kind> (e.g. gpu-nvidia-h200) on a GPU."""
    if info["platform"] == "cpu":
        name = f"cpu-{os.cpu_count()}core"
    else:
        name = "gpu-" + re.sub(r"[^a-z0-9]+", "-", info["device_kind"].lower()).strip("-")
    return REPO / "benchmarks" / "results" / name


def device_counts(args: argparse.Namespace, info: dict[str, Any]) -> list[int]:
    """The device counts to measure: as given on CPU (any count can be made); on a GPU, those
    the machine has (default 1, 2, 4, ... and the full count)."""
    if info["platform"] == "cpu":
        return args.devices or [1, 2, 4]
    available = info["device_count"]
    if args.devices:
        skipped = [d for d in args.devices if d > available]
        if skipped:
            print(f"skipping device counts {skipped}: this machine has {available} {info['platform']} "
                  "device(s)", file=sys.stderr)
        return [d for d in args.devices if d <= available]
    counts = [2**i for i in range(available.bit_length()) if 2**i <= available]
    return counts + ([available] if available not in counts else [])


def run_benchmark(args: argparse.Namespace) -> None:
    """Measures each requested part in order, rewriting the outputs after every row."""
    machine = common.machine_info()
    info = probe(args.timeout)
    resolve_defaults(args, info)
    out_dir = Path(args.out) if args.out else default_out(info)
    print(f"platform {info['platform']} ({info['device_kind']}), {info['device_count']} device(s); "
          f"writing {out_dir / OUTPUT_NAME}.md", file=sys.stderr, flush=True)
    rows: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []

    def add(runs: list[dict[str, Any]]) -> None:
        raw.extend(runs)
        rows.append(combine(runs))
        write_outputs(out_dir, machine, info, args, rows, raw)

    if "size" in args.parts:
        for size in args.sizes:
            steps = size_budget(size, args)
            add(_repeat("size", f"{size} members x {steps:,} steps, all devices", args,
                        num_members=size, steps=steps, num_devices=0))
    if "devices" in args.parts:
        steps = args.device_steps
        for count in device_counts(args, info):
            add(_repeat("devices", f"{args.fixed_population} members x {steps:,} steps, {count} device(s)",
                        args, num_members=args.fixed_population, steps=steps, num_devices=count))
    if "cache" in args.parts:
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in CACHE_MODES}
        for repeat in range(args.repeats):
            cache_dir = tempfile.mkdtemp(prefix="jaxrl-scale-cache-")
            try:
                for mode in CACHE_MODES:
                    print(f"[{time.strftime('%H:%M:%S')}] cache: {mode}, {args.fixed_population} members x "
                          f"{args.cache_steps:,} steps (repeat {repeat + 1}/{args.repeats}) ...",
                          file=sys.stderr, flush=True)
                    record = measure("cache", args.fixed_population, args.cache_steps, 0, args.timeout,
                                     cache=mode, cache_dir=None if mode == "off" else cache_dir)
                    record["repeat"] = repeat
                    print(f"    {_brief(record)}", file=sys.stderr, flush=True)
                    runs[mode].append(record)
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)
        for mode in CACHE_MODES:
            add(runs[mode])
    markdown = write_outputs(out_dir, machine, info, args, rows, raw)
    print(markdown)
    print(f"wrote {out_dir / (OUTPUT_NAME + '.md')} and {out_dir / (OUTPUT_NAME + '.json')}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (the `--worker*` ones are for the subprocesses)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    parser.add_argument("--sizes", type=int, nargs="+", help=f"population sizes (default {DEFAULTS['sizes']})")
    parser.add_argument("--devices", type=int, nargs="+",
                        help="device counts for the devices part (default: 1 2 4 on CPU; on a GPU "
                             "1, 2, 4, ... up to the GPUs present)")
    parser.add_argument("--steps", type=int, help=f"env steps per member (default {DEFAULTS['steps']:,})")
    parser.add_argument("--steps-for-large", type=int,
                        help=f"env steps per member from --large-from members up (default "
                             f"{DEFAULTS['steps_for_large']:,} on CPU, --steps on a GPU)")
    parser.add_argument("--large-from", type=int, default=1024, help="population size where --steps-for-large starts")
    parser.add_argument("--budgets", nargs="*", metavar="SIZE:STEPS",
                        help="per-population budgets overriding the two above (default "
                             f"{' '.join(DEFAULTS['budgets'])} on CPU, none on a GPU; "
                             "pass --budgets with nothing for none)")
    parser.add_argument("--fixed-population", type=int,
                        help=f"population of the devices and cache parts (default {DEFAULTS['fixed_population']})")
    parser.add_argument("--device-steps", type=int,
                        help=f"env steps per member in the devices part (default "
                             f"{DEFAULTS['device_steps']:,} on CPU, --steps on a GPU)")
    parser.add_argument("--cache-steps", type=int,
                        help=f"env steps per member in the cache part (default {DEFAULTS['cache_steps']:,})")
    parser.add_argument("--repeats", type=int, default=1, help="fresh subprocesses per row (median reported)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed per measurement")
    parser.add_argument("--out", help="folder for scale_throughput.md / .json (default "
                                      "benchmarks/results/cpu-<cores>core, or gpu-<kind> on a GPU)")
    parser.add_argument("--note", default="", help="a remark for the header line, e.g. about machine load")
    parser.add_argument("--smoke", action="store_true",
                        help="quick check: sizes 1 4, devices 1 2, 4096 steps, population 16")
    parser.add_argument("--worker", choices=("probe", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-seeds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--worker-devices", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--worker-cache", choices=CACHE_MODES, default="off", help=argparse.SUPPRESS)
    parser.add_argument("--worker-cache-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    given = [value for value in (*(args.sizes or []), *(args.devices or []), args.steps,
                                 args.steps_for_large, args.fixed_population, args.device_steps,
                                 args.cache_steps, args.repeats,
                                 *dqn_throughput.parse_budgets(args.budgets or []).values())
             if value is not None]
    if given and min(given) < 1:
        parser.error("sizes, device counts, budgets and --repeats must be positive")
    return args


def resolve_defaults(args: argparse.Namespace, info: dict[str, Any]) -> None:
    """Fills the options left unset: `--smoke` values, else the defaults (on a GPU without
    the cuts that keep the CPU run short)."""
    if args.smoke:
        defaults = SMOKE
    elif info["platform"] == "cpu":
        defaults = DEFAULTS
    else:
        defaults = {**DEFAULTS, **GPU_DEFAULTS}
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("steps_for_large", "device_steps"):  # GPU: no cut
        if getattr(args, key) is None:
            setattr(args, key, args.steps)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: a worker measurement, or the whole benchmark."""
    args = parse_args(argv)
    if args.worker == "probe":
        probe_worker()
    elif args.worker == "train":
        train_worker(args.worker_seeds, args.worker_steps, args.worker_devices, args.worker_cache,
                     args.worker_cache_dir)
    else:
        run_benchmark(args)


if __name__ == "__main__":
    main()
