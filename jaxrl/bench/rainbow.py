"""The `rainbow` suite: what each Rainbow part costs in steady SPS.

Plain DQN at the single-file reference's settings (`configs/dqn_cartpole_reference.yaml`: 10
envs, buffer 1e4, batch 128, one gradient step per 10 env steps, 120-84 ReLU), each part
switched on alone by a config override, and all six together (`algo.rainbow=true`), at one
population size. Every row is a fresh `jaxrl.bench.worker` process (exactly `jaxrl train`);
the parts run interleaved within each repeat, and "vs plain DQN" pairs runs of one repeat.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jaxrl.bench import common
from jaxrl.bench.throughput import SPEED_ONLY, chunked, platform_class

CONFIG = "dqn_cartpole_reference.yaml"
C51_SUPPORT = ("algo.v_min=0.0", "algo.v_max=100.0")  # covers CartPole's discounted returns (γ = 0.99)
LEARN_EARLY = ("algo.learning_starts=1000",)  # so the steady phase is all gradient steps


class Part(NamedTuple):
    """One row: plain DQN plus the overrides that switch parts on."""

    name: str
    title: str
    overrides: tuple[str, ...] = ()


ROWS = (
    Part("dqn", "plain DQN"),
    Part("double", "+ double Q-learning", ("algo.double=true",)),
    Part("dueling", "+ dueling heads", ("algo.dueling=true",)),
    Part("per", "+ prioritised replay", ("algo.prioritized=true",)),
    Part("n-step", "+ 3-step returns", ("algo.n_steps=3",)),
    Part("c51", "+ C51 (51 atoms)", ("algo.distributional=true", *C51_SUPPORT)),
    Part("noisy", "+ noisy nets", ("algo.noisy=true",)),
    Part("rainbow", "all six (Rainbow)", ("algo.rainbow=true", *C51_SUPPORT)),
)
TINY = ("dqn", "rainbow")
# (seeds, env steps per seed) per budget and platform class
PLAN = {("tiny", "cpu"): (2, 3_000), ("quick", "cpu"): (16, 30_000), ("full", "cpu"): (16, 100_000),
        ("tiny", "gpu"): (2, 3_000), ("quick", "gpu"): (256, 30_000), ("full", "gpu"): (1024, 100_000)}


def measure(part: Part, config_dir: Path, seeds: int, steps: int, repeat: int, timeout: float) -> dict[str, Any]:
    """One part's measurement in a fresh worker process."""
    spec = {"config": str(config_dir / CONFIG), "seeds": seeds, "steps": steps,
            "overrides": [*LEARN_EARLY, *part.overrides, *SPEED_ONLY, chunked(steps)]}
    record = {"part": part.name, "seeds": seeds, "repeat": repeat, "requested_steps_per_seed": steps,
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return common.run_jaxrl(spec, timeout, record)


def row_cells(part: Part, row: dict[str, Any], ratio: dict[str, float] | None) -> str:
    """One Markdown table line."""
    overrides = " ".join(f"`{o}`" for o in part.overrides) or "–"
    lead = f"| {part.title} | {overrides} | {row['seeds']} "
    if row.get("status") != "ok" or not row.get("repeats"):
        return lead + f"| – | – | – | – | – | not measured: {str(row.get('error', row.get('status')))[:160]} |"
    low, high = row["steady_sps_range"]
    memory = row["peak_device_mib"] if row.get("peak_device_mib") is not None else row["peak_rss_mib"]
    vs = "–" if ratio is None else common.fmt_range(ratio["median"], ratio["min"], ratio["max"], 2, "×")
    return (lead + f"| {row['env_steps_per_seed']:,} | {row['compile_seconds']:.1f} "
            f"| {common.fmt_range(row['steady_sps'], low, high)} | {vs} | {common.fmt(memory)} "
            f"| {common.eval_cell(row['final_eval'].get('per_seed'))} |")


def ratios_to_plain(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float] | None]:
    """Each part's SPS over plain DQN's, paired within a repeat, summarised (median, range)."""
    plain = [run for run in runs if run["part"] == "dqn"]
    return {part.name: common.summary(common.paired_ratios([r for r in runs if r["part"] == part.name], plain))
            for part in ROWS if part.name != "dqn"}


def render(machine: dict[str, Any], budget: common.Budget, runs: Sequence[dict[str, Any]]) -> str:
    """The suite's Markdown report."""
    memory = "peak RSS MiB" if machine["platform"] == "cpu" else "peak device MiB"
    lines = common.header("Rainbow parts: the cost of each in steady SPS", machine, budget, [
        f"each row: `configs/{CONFIG}` (the single-file reference's settings) with the row's overrides, "
        "trained by `jaxrl train`'s code in a fresh process (no compilation cache); every row also "
        f"`{' '.join(LEARN_EARLY)}` (learning throughout the steady phase), `{' '.join(SPEED_ONLY)}` and five chunks",
        "C51 rows use the support [0, 100] (CartPole's discounted returns at γ = 0.99)",
        "vs plain DQN: this row's steady SPS over plain DQN's, paired within a repeat (the parts run "
        "interleaved), median [min–max]",
    ])
    lines += [f"| part | overrides | seeds | env steps / seed | compile s | steady SPS median [min–max] "
              f"| vs plain DQN | {memory} | greedy eval mean / IQM |", "|---|---|---|---|---|---|---|---|---|"]
    ratios = ratios_to_plain(runs)
    for part in ROWS:
        mine = [run for run in runs if run["part"] == part.name]
        if mine:
            lines.append(row_cells(part, common.median_of(mine), ratios.get(part.name)))
    lines += ["", "Steady SPS leaves out compile, the first chunk and evaluation; budgets this short measure "
              "speed, not learning."]
    return "\n".join(lines) + "\n"


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = (), config_dir: Path | None = None) -> list[Path]:
    """Measures every part (or `only` those; tiny: plain DQN and Rainbow), interleaved within
    each repeat; rewrites `rainbow.md/.json` after each measurement and prints the table."""
    from jaxrl.bench import configs_folder

    config_dir = config_dir or configs_folder()
    names = only or (TINY if budget.name == "tiny" else [part.name for part in ROWS])
    parts = [part for part in ROWS if part.name in names]
    seeds, steps = PLAN[(budget.name, platform_class(machine["platform"]))]
    runs: list[dict[str, Any]] = []
    written: list[Path] = []
    for repeat in range(budget.repeats):
        for part in parts:
            common.progress(f"{part.name}: {seeds} seeds x {steps:,} steps ({repeat + 1}/{budget.repeats})")
            runs.append(measure(part, config_dir, seeds, steps, repeat, timeout))
            written = common.write_report(out_dir, "rainbow", render(machine, budget, runs),
                                          {"machine": machine, "budget": budget._asdict(), "runs": runs})
    print(render(machine, budget, runs))
    return written
