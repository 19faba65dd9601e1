"""The `checkpoint` suite: what checkpoints cost. Each case trains a shipped config through
`jaxrl train`'s code (a fresh `jaxrl.bench.worker` process) with checkpoints every
`checkpoint.every_env_steps`, and reports each save's seconds (from the run's `timings.jsonl`),
the checkpoint's size on disk and the saves' share of training time.

Cases: PPO CartPole (`ppo_cartpole_reference.yaml`), DQN CartPole with its replay buffers in
the checkpoint (`dqn_cartpole.yaml`, 5e4 transitions per seed) and the same DQN with
`checkpoint.replay_buffer=false`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jaxrl.bench import common


class Case(NamedTuple):
    """One config with its checkpoint overrides; `algo` picks the budget's env steps."""

    name: str
    title: str
    config: str
    algo: str  # ppo | dqn
    overrides: tuple[str, ...] = ()


ROWS = (
    Case("ppo", "PPO", "ppo_cartpole_reference.yaml", "ppo"),
    Case("dqn-buffers", "DQN, buffers saved", "dqn_cartpole.yaml", "dqn", ("checkpoint.replay_buffer=true",)),
    Case("dqn-no-buffers", "DQN, buffers left out", "dqn_cartpole.yaml", "dqn", ("checkpoint.replay_buffer=false",)),
)


class Plan(NamedTuple):
    """A budget: seeds, env steps per seed by algorithm, and the checkpoint interval (None: the
    config's default, `checkpoint.every_env_steps`)."""

    seeds: int
    steps: dict[str, int]
    every: int | None = None


PLANS = {
    "tiny": Plan(2, {"ppo": 4_096, "dqn": 3_000}, every=1_000),
    "quick": Plan(64, {"ppo": 102_400, "dqn": 50_000}, every=25_000),
    "full": Plan(256, {"ppo": 200_000, "dqn": 100_000}),
}


def overrides(case: Case, plan: Plan, budget: str) -> list[str]:
    """The case's overrides, the budget's interval and (tiny) small chunks; evaluation at the end only."""
    extra = [f"checkpoint.every_env_steps={plan.every}"] if plan.every else []
    if budget == "tiny":  # several chunks, and DQN learning within the budget
        extra += ["log_every_env_steps=1000"] + (["algo.learning_starts=1000"] if case.algo == "dqn" else [])
    return [*case.overrides, *extra, "eval.every_env_steps=0"]


def measure(case: Case, config_dir: Path, budget: str, repeat: int, timeout: float) -> dict[str, Any]:
    """One case in a fresh worker; the record gains the saves' share of training time."""
    plan = PLANS[budget]
    spec = {"config": str(config_dir / case.config), "seeds": plan.seeds, "steps": plan.steps[case.algo],
            "overrides": overrides(case, plan, budget)}
    record = common.run_jaxrl(spec, timeout, {"case": case.name, "seeds": plan.seeds, "repeat": repeat,
                                              "overrides": spec["overrides"]})
    if record.get("status") == "ok":
        saves, training = sum(record["checkpoint_seconds"]), sum(record["chunk_seconds"])
        record["share_of_training_time"] = saves / (saves + training) if saves + training else None
    return record


def row_cells(case: Case, row: dict[str, Any]) -> str:
    """One Markdown table line."""
    lead = f"| {case.title} | `{case.config}` | {row['seeds']} "
    if row.get("status") != "ok" or not row.get("repeats"):
        return lead + f"| – | – | – | – | – | not measured: {str(row.get('error', row.get('status')))[:160]} |"
    every = next((f"{int(o.split('=', 1)[1]):,}" for o in row["overrides"]
                  if o.startswith("checkpoint.every_env_steps=")), "default")
    each = ", ".join(f"{s:.2f}" for s in row["checkpoint_seconds"])
    return (lead + f"| {row['env_steps_per_seed']:,} | {every} | {len(row['checkpoint_seconds'])} | {each} "
            f"| {row['checkpoint_mib']:,.1f} | {100 * row['share_of_training_time']:.2f}% |")


def render(machine: dict[str, Any], budget: common.Budget, runs: Sequence[dict[str, Any]]) -> str:
    """The suite's Markdown report: one row per case (the median repeat's share)."""
    lines = common.header("Checkpoint overhead: CartPole-v1, PPO and DQN", machine, budget, [
        "each row: the config trained by `jaxrl train`'s code in a fresh process (no compilation cache); "
        "interval: `checkpoint.every_env_steps` per seed (default 100,000), plus a save at the end",
        "seconds per save (first repeat) and the share (saves / (saves + training chunks), median over repeats) "
        "from the run's `timings.jsonl`; size: the largest checkpoint folder on disk",
    ])
    lines += ["| case | config | seeds | env steps / seed | interval | saves | seconds per save "
              "| checkpoint MiB | share of training time |", "|---|---|---|---|---|---|---|---|---|"]
    for case in ROWS:
        mine = [run for run in runs if run["case"] == case.name]
        if mine:
            lines.append(row_cells(case, common.median_of(mine, ("share_of_training_time",))))
    return "\n".join(lines) + "\n"


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = (), config_dir: Path | None = None) -> list[Path]:
    """Measures every case (or `only` those), rewriting `checkpoint.md/.json` after each, and
    prints the table."""
    from jaxrl.bench import configs_folder

    config_dir = config_dir or configs_folder()
    runs: list[dict[str, Any]] = []
    written: list[Path] = []
    for case in (c for c in ROWS if not only or c.name in only):
        for repeat in range(budget.repeats):
            common.progress(f"{case.name} ({budget.name} budget, {repeat + 1}/{budget.repeats})")
            runs.append(measure(case, config_dir, budget.name, repeat, timeout))
        written = common.write_report(out_dir, "checkpoint", render(machine, budget, runs),
                                      {"machine": machine, "budget": budget._asdict(), "runs": runs})
    print(render(machine, budget, runs))
    return written
