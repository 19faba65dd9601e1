"""The `throughput` suite: steady SPS, compile seconds and peak memory of every algorithm on its
usual environments, across population sizes, on this machine's devices.

Each (workload, population size, repeat) is one fresh `jaxrl.bench.worker` process training a
shipped config exactly as `jaxrl train` does, on a budget cut to a few seconds of steady work:
the figures are speed, not learning. DQN-family rows start learning early so the steady phase
includes gradient steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jaxrl.bench import common

SPEED_ONLY = ("eval.every_env_steps=0", "eval.episodes=2", "checkpoint.every_env_steps=0")


class Workload(NamedTuple):
    """One algorithm on one environment, as a shipped config plus throughput-only overrides."""

    name: str
    algorithm: str
    env: str
    config: str
    overrides: tuple[str, ...] = ()
    kind: str = "jittable"  # jittable | brax | host
    population_steps: int = 3_000_000  # env steps of the whole population per row on CPU...
    max_steps_per_seed: int = 300_000  # ...but at most this many per seed...
    min_steps_per_seed: int = 20_000  # ...and at least this many
    extra: str | None = None  # the jaxrl extra the env needs


_LEARN_EARLY = ("algo.learning_starts=1000",)
WORKLOADS = (
    Workload("ppo-cartpole", "PPO (categorical)", "CartPole-v1", "ppo_cartpole.yaml"),
    Workload("ppo-gaussian-pendulum", "PPO (Gaussian)", "Pendulum-v1", "ppo_pendulum.yaml",
             population_steps=2_000_000, max_steps_per_seed=200_000),
    Workload("ppo-beta-pendulum", "PPO (Beta)", "Pendulum-v1", "ppo_beta_pendulum.yaml",
             population_steps=2_000_000, max_steps_per_seed=200_000),
    Workload("grpo-cartpole", "GRPO", "CartPole-v1", "grpo_cartpole.yaml",
             population_steps=4_000_000, min_steps_per_seed=64_000),
    Workload("dqn-cartpole", "DQN", "CartPole-v1", "dqn_cartpole.yaml", _LEARN_EARLY,
             population_steps=1_000_000, max_steps_per_seed=100_000, min_steps_per_seed=10_000),
    Workload("rainbow-cartpole", "Rainbow DQN", "CartPole-v1", "rainbow_cartpole.yaml", _LEARN_EARLY,
             population_steps=500_000, max_steps_per_seed=50_000, min_steps_per_seed=10_000),
    Workload("ppo-minatar-breakout", "PPO (categorical)", "MinAtar Breakout", "ppo_minatar_breakout.yaml",
             population_steps=1_000_000, max_steps_per_seed=200_000, min_steps_per_seed=40_960),
    Workload("dqn-minatar-breakout", "DQN", "MinAtar Breakout", "dqn_minatar_breakout.yaml", _LEARN_EARLY,
             population_steps=200_000, max_steps_per_seed=40_000, min_steps_per_seed=8_000),
    Workload("rainbow-minatar-breakout", "Rainbow DQN", "MinAtar Breakout", "rainbow_minatar_breakout.yaml",
             _LEARN_EARLY, population_steps=100_000, max_steps_per_seed=20_000, min_steps_per_seed=4_000),
    Workload("ppo-brax-ant", "PPO (Gaussian)", "brax ant (mjx)", "ppo_brax_ant.yaml",
             ("env.num_envs=16", "algo.num_steps=32", "algo.num_minibatches=4"), kind="brax",
             population_steps=60_000, max_steps_per_seed=20_480, min_steps_per_seed=5_120, extra="brax"),
    *(Workload(f"{name}-lunarlander{suffix}", algorithm, f"LunarLander-v3 ({backend})", config,
               (*overrides, f"env.backend={backend}"), kind="host", population_steps=steps,
               max_steps_per_seed=most, min_steps_per_seed=least, extra=extra)
      for backend, suffix, extra in (("gymnasium", "", "box2d"), ("envpool", "-envpool", "envpool"))
      for name, algorithm, config, overrides, steps, most, least in (
          ("ppo", "PPO (categorical)", "ppo_lunarlander.yaml", ("algo.num_minibatches=16",),
           600_000, 65_536, 8_192),
          ("grpo", "GRPO", "grpo_lunarlander.yaml", ("algo.horizon=256",), 600_000, 81_920, 40_960),
          ("dqn", "DQN", "dqn_lunarlander.yaml", _LEARN_EARLY, 200_000, 40_000, 4_000))),
)
TINY_STEPS = 5_120
TINY = ("ppo-cartpole", "dqn-cartpole")

# Population sizes per budget and platform; brax and host rows stop earlier (compile time on
# CPU, worker processes on any machine).
SIZES = {
    ("tiny", "cpu"): (1, 2), ("tiny", "gpu"): (1, 2),
    ("quick", "cpu"): (1, 16), ("quick", "gpu"): (1, 256),
    ("full", "cpu"): (1, 16, 64), ("full", "gpu"): (1, 64, 1024, 4096),
}
KIND_MAX_SIZE = {("brax", "cpu"): 4, ("brax", "gpu"): 1024, ("host", "cpu"): 64, ("host", "gpu"): 64}
GPU_SCALE = 30  # a GPU row's population budget is this many times a CPU row's


def platform_class(platform: str) -> str:
    """`cpu` or `gpu` (TPUs and other accelerators size like a GPU)."""
    return "cpu" if platform == "cpu" else "gpu"


def sizes_for(workload: Workload, budget: str, platform: str) -> list[int]:
    """The population sizes a workload is measured at on this budget and platform."""
    cls = platform_class(platform)
    limit = KIND_MAX_SIZE.get((workload.kind, cls))
    return [size for size in SIZES[(budget, cls)] if limit is None or size <= limit]


def steps_per_seed(workload: Workload, seeds: int, budget: str, platform: str) -> int:
    """Env steps per seed for one row: the population budget shared out, within the per-seed
    bounds (tiny: the lower bound, so CI stays quick)."""
    if budget == "tiny":
        return min(TINY_STEPS, workload.min_steps_per_seed)
    total = workload.population_steps * (GPU_SCALE if platform_class(platform) == "gpu" else 1)
    if budget == "quick":
        total //= 4
    return int(min(workload.max_steps_per_seed, max(workload.min_steps_per_seed, total // seeds)))


def chunked(steps: int) -> str:
    """A `log_every_env_steps` override giving about five chunks, so steady SPS excludes the
    first (compiling) chunk and still averages several."""
    return f"log_every_env_steps={max(1, steps // 5)}"


def measure(workload: Workload, config_dir: Path, seeds: int, steps: int, timeout: float) -> dict[str, Any]:
    """One row's measurement in a fresh worker process."""
    spec = {"config": str(config_dir / workload.config), "seeds": seeds, "steps": steps,
            "overrides": [*workload.overrides, *SPEED_ONLY, chunked(steps)],
            "raw_env": workload.kind == "host"}  # the simulator alone, in the same process
    record = {"workload": workload.name, "seeds": seeds, "requested_steps_per_seed": steps,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return common.run_jaxrl(spec, timeout, record)


def last_error_line(row: dict[str, Any]) -> str:
    """The reason a row has no figures: the worker's own last error line (e.g. the memory
    check's refusal), without the exception's class path."""
    line = str(row.get("error") or row.get("status")).split(" | ")[-1]
    return line.split("Error: ", 1)[-1] if "Error: " in line else line


def row_cells(workload: Workload, row: dict[str, Any]) -> str:
    """One Markdown table line."""
    lead = f"| {workload.algorithm} | {workload.env} | {row['seeds']} "
    if row.get("status") != "ok":
        return lead + f"| – | – | – | – | – | – | – | not measured: {last_error_line(row)} |"
    low, high = row["steady_sps_range"]
    spread = f" [{low:,.0f}–{high:,.0f}]" if row["repeats"] > 1 else ""
    memory = row["peak_device_mib"] if row.get("peak_device_mib") is not None else row["peak_rss_mib"]
    raw = row.get("raw_env_sps")
    simulator = f"| {raw:,.0f} | {row['steady_sps'] / raw:.2f} " if raw else "| – | – "
    return (lead + f"| {row['env_steps_per_seed']:,} | {row['devices_used']} | {row['compile_seconds']:.1f} "
            f"| {row['steady_sps']:,.0f}{spread} | {row['steady_sps'] / row['seeds']:,.0f} {simulator}"
            f"| {common.fmt(memory)} |")


def render(machine: dict[str, Any], budget: common.Budget, rows: list[tuple[Workload, dict[str, Any]]],
           skipped: dict[str, str], remeasured: Sequence[str] = ()) -> str:
    """The suite's Markdown report (`remeasured`: workloads measured again into an earlier report)."""
    memory = "peak RSS MiB" if machine["platform"] == "cpu" else "peak device MiB"
    lines = common.header("Throughput: every algorithm across population sizes", machine, budget, [
        "each row: a shipped config trained by `jaxrl train`'s code in a fresh process (no compilation "
        "cache), on a budget cut to seconds of steady work; greedy evaluation only at the end",
        f"overrides on every row: `{' '.join(SPEED_ONLY)}`, five chunks; DQN rows `algo.learning_starts=1000`",
        *([f"rows of {', '.join(remeasured)} measured again on {machine['date']} (`--merge`); "
           "the others come from the earlier report in this folder"] if remeasured else []),
    ])
    lines += [f"| algorithm | env | seeds | env steps / seed | devices | compile s | steady SPS (all seeds) "
              f"| SPS per seed | raw env SPS | training ÷ raw | {memory} |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [row_cells(workload, row) for workload, row in rows]
    lines += ["", "Compile s: init, the training chunk and the evaluator, traced and compiled. Steady SPS: env "
              "steps of all seeds per second of training, excluding compile, the first chunk and evaluation. "
              "Raw env SPS (host envs): the same backend stepping the population's envs (seeds x env.num_envs "
              "copies, one vector env) with random actions and no learner, measured in the same process "
              "before and after training; training ÷ raw is the share of the simulator's speed training keeps. "
              "Memory: the worker process's peak resident set on CPU (≈ 0.6 GiB is Python and JAX), the "
              "largest device's peak on an accelerator."]
    if skipped:
        lines += ["", "Not measured here:"] + [f"- {name}: {why}" for name, why in skipped.items()]
    return "\n".join(lines) + "\n"


def plot(rows: list[tuple[Workload, dict[str, Any]]], machine: dict[str, Any]):
    """A figure writer: steady SPS against population size, one line per workload (log-log)."""

    def write(out_dir: Path) -> Path | None:
        from jaxrl.analysis.plots import _pyplot, _save

        series: dict[str, list[tuple[int, float]]] = {}
        for workload, row in rows:
            if row.get("status") == "ok":
                series.setdefault(f"{workload.algorithm}, {workload.env}", []).append(
                    (row["seeds"], row["steady_sps"]))
        if not series:
            return None
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(10.5, 5.5))
        colours, markers = plt.get_cmap("tab20").colors, "os^vD<>ph*Xd"
        for index, (label, points) in enumerate(series.items()):
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=markers[index % len(markers)],
                    color=colours[(2 * index) % 20 + (index // 10) % 2], label=label)
        sizes = sorted({seeds for points in series.values() for seeds, _ in points})
        ax.set(xscale="log", yscale="log", xlabel="population size (seeds)", ylabel="steady env steps / s (all seeds)",
               title=f"jaxrl throughput on {machine['kind']}")
        ax.set_xticks(sizes, [str(size) for size in sizes])
        ax.minorticks_off()
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        return _save(fig, out_dir / "throughput_sps.png")

    return write


def rows_of(runs: Sequence[dict[str, Any]]) -> list[tuple[Workload, dict[str, Any]]]:
    """Table rows from raw runs: one per (workload, population size), in the suite's order,
    timings the medians of their repeats."""
    rows = []
    for workload in WORKLOADS:
        for seeds in sorted({run["seeds"] for run in runs if run["workload"] == workload.name}):
            rows.append((workload, common.median_of(
                [run for run in runs if (run["workload"], run["seeds"]) == (workload.name, seeds)],
                ("steady_sps", "compile_seconds", "raw_env_sps"))))
    return rows


def earlier_runs(out_dir: Path, machine: dict[str, Any], budget: common.Budget) -> list[dict[str, Any]]:
    """The runs of an earlier report in `out_dir` from the same kind of machine and budget
    (for `--merge`), else none."""
    path = out_dir / "throughput.json"
    if not path.is_file():
        return []
    payload = json.loads(path.read_text())
    same = payload.get("machine", {}).get("kind") == machine["kind"] and \
        payload.get("budget", {}).get("name") == budget.name
    return payload.get("runs", []) if same else []


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = (), config_dir: Path | None = None, merge: bool = False) -> list[Path]:
    """Measures every workload (or `only` those; tiny: a CI-sized two) at every size, writes
    `throughput.md/.json/_sps.png` into `out_dir` after each row, and prints the table. With
    `merge`, rows of workloads not measured now are kept from the report already in `out_dir`."""
    from jaxrl.bench import configs_folder

    config_dir = config_dir or configs_folder()
    names = only or (TINY if budget.name == "tiny" else [w.name for w in WORKLOADS])
    workloads = [w for w in WORKLOADS if w.name in names]
    kept = [r for r in (earlier_runs(out_dir, machine, budget) if merge else []) if r["workload"] not in names]
    raw: list[dict[str, Any]] = []
    skipped = {w.name: why for w in workloads if (why := common.missing_extra(w.extra))}

    def report() -> tuple[str, list[Path]]:
        rows = rows_of(kept + raw)
        markdown = render(machine, budget, rows, skipped, remeasured=[w.name for w in workloads] if kept else [])
        payload = {"machine": machine, "budget": budget._asdict(), "runs": kept + raw,
                   "rows": [row for _, row in rows]}
        return markdown, common.write_report(out_dir, "throughput", markdown, payload, [plot(rows, machine)])

    for workload in (w for w in workloads if w.name not in skipped):
        for seeds in sizes_for(workload, budget.name, machine["platform"]):
            steps = steps_per_seed(workload, seeds, budget.name, machine["platform"])
            for repeat in range(budget.repeats):
                common.progress(f"{workload.name}: {seeds} seeds x {steps:,} steps ({repeat + 1}/{budget.repeats})")
                raw.append(measure(workload, config_dir, seeds, steps, timeout) | {"repeat": repeat})
                common.progress("  " + brief(raw[-1]))
            report()
    markdown, written = report()
    print(markdown)
    return written


def brief(record: dict[str, Any]) -> str:
    """A one-line progress note for one measurement."""
    if record.get("status") != "ok":
        return f"{record.get('status')}: {record.get('error')}"
    return (f"compile {record['compile_seconds']:.1f} s, {record['steady_sps']:,.0f} SPS, "
            f"RSS {record['peak_rss_mib']:,.0f} MiB (process {record['process_seconds']:.0f} s)")
