"""The `quality` suite: each shipped config's final greedy-eval IQM (95% bootstrap CI over its
seeds) next to the figure a correct implementation reaches, with a pass/short mark per row.

Rows run the shipped config in a fresh `jaxrl.bench.worker` process at the reference's budget.
Rows that this machine cannot afford (MinAtar at 1e7 steps, brax ant at 5e7 on a 2-core CPU) are
listed with their estimated cost instead, or taken from an earlier run's `summary.json` with
`--reuse DIR` (named `<row id>.json` or `<config>.json` there, on the row's seeds and budget),
saying so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

from jaxrl.bench import common


class Reference(NamedTuple):
    """A published learning figure: what reaches it, on which budget, and who reported it."""

    figure: str  # as published, e.g. "490 ± 6"
    value: float  # the number a row must reach
    source: str


class QualityRow(NamedTuple):
    """One shipped config at one budget, with the reference it is held to (if any)."""

    id: str
    task: str
    algorithm: str
    config: str | None  # None: no shipped config for this reference
    steps: int  # env steps per seed
    seeds: int
    reference: Reference | None
    cpu_hours: float  # estimated wall hours on the 2-core CPU machine (from its measured SPS)
    extra: str | None = None
    note: str = ""  # why this row stands where it does, shown when it is short or not run


ZOO, CLEANRL, BLINES = "rl-baselines3-zoo", "CleanRL", "gymnax-blines"
ROWS = (
    QualityRow("ppo-cartpole-1e5", "CartPole-v1", "PPO", "ppo_cartpole.yaml", 100_000, 16,
               Reference("500 ± 0 (tuned)", 500.0, ZOO), 0.01),
    QualityRow("ppo-cartpole-5e5", "CartPole-v1", "PPO", "ppo_cartpole_reference.yaml", 500_000, 16,
               Reference("490 ± 6", 490.0, CLEANRL), 0.02,
               note="the reference config keeps PureJaxRL/CleanRL's untuned defaults (lr 2.5e-4, 4 envs); "
                    "its seeds are still improving at 5e5 steps"),
    QualityRow("dqn-cartpole-5e5", "CartPole-v1", "DQN", "dqn_cartpole.yaml", 500_000, 16,
               Reference("498 ± 2", 498.0, CLEANRL + " dqn_jax"), 0.04),
    QualityRow("ppo-lunarlander-1e6", "LunarLander-v3", "PPO", "ppo_lunarlander.yaml", 1_000_000, 16,
               Reference("242 ± 32", 242.0, ZOO), 0.4, "box2d"),
    QualityRow("dqn-lunarlander-1e5", "LunarLander-v3", "DQN", "dqn_lunarlander.yaml", 100_000, 16,
               Reference("154 ± 79 (not solved)", 154.0, ZOO), 0.08, "box2d",
               note="the shipped config is scheduled for 4e5 steps (ε decays over 15% and the learning rate "
                    "to 0 over the budget, learning starts after 1e4 transitions, 1 gradient step per 4 env "
                    "steps against the zoo's 1 per env step): cut to 1e5 it has only begun; at its own 4e5 "
                    "steps it reaches IQM 235.1 [218.4, 249.4] (the `dqn-lunarlander` row)"),
    QualityRow("ppo-halfcheetah-1e6", "HalfCheetah-v5", "PPO (Gaussian)", "ppo_halfcheetah.yaml", 1_000_000, 8,
               Reference("1,442.6 ± 46.0 (v4)", 1442.6, CLEANRL + " ppo_continuous_action"), 0.75, "mujoco"),
    QualityRow("ppo-hopper-1e6", "Hopper-v5", "PPO (Gaussian)", "ppo_hopper.yaml", 1_000_000, 8,
               Reference("2,382.9 ± 271.7 (v4)", 2382.9, CLEANRL + " ppo_continuous_action"), 0.75, "mujoco"),
    QualityRow("ppo-walker2d-1e6", "Walker2d-v5", "PPO (Gaussian)", "ppo_walker2d.yaml", 1_000_000, 8,
               Reference("2,288.0 ± 571.8 (v4)", 2288.0, CLEANRL + " ppo_continuous_action"), 0.75, "mujoco"),
    QualityRow("ppo-minatar-breakout-1e7", "MinAtar Breakout", "PPO", "ppo_minatar_breakout.yaml", 10_000_000, 4,
               Reference("28", 28.0, BLINES), 1.2),
    QualityRow("ppo-minatar-asterix-1e7", "MinAtar Asterix", "PPO", "ppo_minatar_asterix.yaml", 10_000_000, 4,
               Reference("15", 15.0, BLINES), 1.2),
    QualityRow("ppo-minatar-freeway-1e7", "MinAtar Freeway", "PPO", "ppo_minatar_freeway.yaml", 10_000_000, 4,
               Reference("58", 58.0, BLINES), 1.2),
    QualityRow("ppo-minatar-spaceinvaders-1e7", "MinAtar SpaceInvaders", "PPO", "ppo_minatar_spaceinvaders.yaml", 10_000_000, 4,
               Reference("131", 131.0, BLINES), 1.2),
    QualityRow("ppo-atari-breakout-1e7", "Atari Breakout", "PPO", None, 10_000_000, 3,
               Reference("430", 430.0, CLEANRL), 10.0, note="no shipped Atari Breakout config (dqn_pong.yaml ships Pong)"),
    QualityRow("dqn-atari-breakout-1e7", "Atari Breakout", "DQN", None, 10_000_000, 3,
               Reference("378", 378.0, CLEANRL), 10.0, note="no shipped Atari Breakout config (dqn_pong.yaml ships Pong)"),
    QualityRow("ppo-brax-ant-5e7", "brax ant", "PPO", "ppo_brax_ant.yaml", 50_000_000, 8,
               Reference("≈ 6,000–8,000", 6000.0, "brax training notebook"), 7.5, "brax"),
    # shipped configs without a published figure: reported as measured, at their own budget
    QualityRow("rainbow-cartpole", "CartPole-v1", "Rainbow DQN", "rainbow_cartpole.yaml", 200_000, 64, None, 0.22),
    QualityRow("grpo-cartpole", "CartPole-v1", "GRPO", "grpo_cartpole.yaml", 1_000_000, 64, None, 0.06),
    QualityRow("ppo-acrobot", "Acrobot-v1", "PPO", "ppo_acrobot.yaml", 500_000, 16, None, 0.02),
    QualityRow("ppo-pendulum", "Pendulum-v1", "PPO (Gaussian)", "ppo_pendulum.yaml", 500_000, 64, None, 0.13),
    QualityRow("ppo-beta-pendulum", "Pendulum-v1", "PPO (Beta)", "ppo_beta_pendulum.yaml", 500_000, 64, None, 0.21),
    QualityRow("grpo-pendulum", "Pendulum-v1", "GRPO", "grpo_pendulum.yaml", 2_000_000, 64, None, 0.14),
    QualityRow("dqn-movierec", "MovieRec-v1", "DQN", "dqn_movierec.yaml", 500_000, 16, None, 0.08),
    QualityRow("dqn-lunarlander", "LunarLander-v3", "DQN", "dqn_lunarlander.yaml", 400_000, 16, None, 0.35, "box2d"),
    QualityRow("rainbow-lunarlander", "LunarLander-v3", "Rainbow DQN", "rainbow_lunarlander.yaml", 500_000, 16,
               None, 1.0, "box2d"),
    QualityRow("grpo-lunarlander", "LunarLander-v3", "GRPO", "grpo_lunarlander.yaml", 2_048_000, 4, None, 0.3, "box2d"),
    QualityRow("ppo-lunarlander-continuous", "LunarLanderContinuous-v3", "PPO (Gaussian)",
               "ppo_lunarlander_continuous.yaml", 1_000_000, 8, Reference("270.9 ± 32.1", 270.0, ZOO), 0.3,
               "box2d"),
    QualityRow("ppo-beta-lunarlander-continuous", "LunarLanderContinuous-v3", "PPO (Beta)",
               "ppo_beta_lunarlander_continuous.yaml", 1_000_000, 8, Reference("270.9 ± 32.1 (Gaussian)", 270.0, ZOO),
               0.3, "box2d"),
    QualityRow("ppo-beta-bipedalwalker", "BipedalWalker-v3", "PPO (Beta)", "ppo_beta_bipedalwalker.yaml",
               5_000_000, 8, None, 1.4, "box2d"),
    QualityRow("ppo-carracing", "CarRacing-v3", "PPO (Beta, CNN)", "ppo_carracing.yaml", 4_000_000, 4, None, 8.0,
               "box2d"),
    QualityRow("dqn-minatar-breakout", "MinAtar Breakout", "DQN", "dqn_minatar_breakout.yaml", 3_000_000, 8, None, 3.7),
    QualityRow("rainbow-minatar-breakout", "MinAtar Breakout", "Rainbow DQN", "rainbow_minatar_breakout.yaml",
               3_000_000, 8, None, 4.8),
    QualityRow("ppo-beta-brax-hopper", "brax hopper", "PPO (Beta)", "ppo_beta_brax_hopper.yaml", 10_000_000, 8,
               None, 1.5, "brax"),
    QualityRow("ppo-brax-halfcheetah", "brax halfcheetah", "PPO (Gaussian)", "ppo_brax_halfcheetah.yaml",
               50_000_000, 8, None, 7.5, "brax"),
    QualityRow("dqn-atari-pong", "Atari Pong", "DQN", "dqn_pong.yaml", 10_000_000, 1, None, 3.0, "atari"),
)
TINY = ("ppo-cartpole-1e5", "dqn-cartpole-5e5")
TINY_STEPS, TINY_SEEDS = 4_096, 2
CPU_HOURS_LIMIT = {"tiny": 1.0, "quick": 0.03, "full": 0.25}  # rows costlier than this are not run on CPU


def plan(row: QualityRow, platform: str, reuse: Path | None, max_cpu_hours: float) -> tuple[str, str]:
    """What to do with a row: ("run", ""), ("reuse", path) or ("skip", why)."""
    if row.config is None:
        return "skip", row.note
    earlier = reusable(row, reuse) if reuse is not None else None
    if earlier is not None:
        return "reuse", str(earlier)
    missing = common.missing_extra(row.extra)
    if missing:
        return "skip", missing
    if platform == "cpu" and row.cpu_hours > max_cpu_hours:
        return "skip", f"≈ {row.cpu_hours:g} h on the 2-core CPU; run it on a GPU (or with --max-cpu-hours)"
    return "run", ""


def reusable(row: QualityRow, folder: Path) -> Path | None:
    """An earlier run's summary for this row in `folder` (`<row id>.json`, else `<config>.json`),
    only if it trained the row's seeds on the row's budget (to within one update)."""
    for name in (f"{row.id}.json", f"{Path(row.config or '').stem}.json"):
        path = folder / name
        if not path.is_file():
            continue
        summary = json.loads(path.read_text())
        steps = summary.get("total_env_steps_per_seed", 0)
        if (summary.get("seeds") == row.seeds and "final_eval" in summary
                and abs(steps - row.steps) <= max(1, row.steps // 100)):
            return path
    return None


def mark(row: QualityRow, iqm: float | None, ci_high: float | None) -> str:
    """pass: the IQM reaches the reference; within CI: the reference lies inside the 95% CI;
    short: below it (the row's note gives the cause where one is known)."""
    if row.reference is None or iqm is None:
        return "–"
    if iqm >= row.reference.value:
        return "pass"
    return "within CI" if ci_high is not None and ci_high >= row.reference.value else "short"


def measure(row: QualityRow, config_dir: Path, budget: str, timeout: float) -> dict[str, Any]:
    """Trains the row's config on its budget (tiny: a few thousand steps) in a fresh worker."""
    steps, seeds = (TINY_STEPS, TINY_SEEDS) if budget == "tiny" else (row.steps, row.seeds)
    overrides = ["checkpoint.every_env_steps=0"]
    if budget == "tiny":
        overrides += [f"log_every_env_steps={TINY_STEPS // 2}", "eval.every_env_steps=0", "eval.episodes=2"]
        if row.algorithm.endswith("DQN"):
            overrides.append("algo.learning_starts=1000")
    spec = {"config": str(config_dir / row.config), "seeds": seeds, "steps": steps, "overrides": overrides}
    record = {"id": row.id, "seeds": seeds, "requested_steps_per_seed": steps}
    return common.run_jaxrl(spec, timeout, record)


def from_summary(row: QualityRow, path: str) -> dict[str, Any]:
    """A row's result from an earlier `jaxrl train` run's summary.json."""
    summary = json.loads(Path(path).read_text())
    return {"id": row.id, "status": "ok", "reused": path, "seeds": summary["seeds"],
            "env_steps_per_seed": summary["total_env_steps_per_seed"], "final_eval": summary["final_eval"],
            "steady_sps": summary.get("steady_sps"), "wall_seconds": summary.get("wall_seconds")}


def row_cells(row: QualityRow, result: dict[str, Any]) -> str:
    """One Markdown line: the row, its measured IQM and CI, the reference and the mark."""
    reference = f"{row.reference.figure} ({row.reference.source})" if row.reference else "–"
    lead = f"| {row.task} | {row.algorithm} | `{row.config or '–'}` "
    if result.get("status") != "ok":
        why = result.get("why") or f"{result.get('status')}: {str(result.get('error', ''))[:90]}"
        return lead + f"| {common.fmt(row.steps)} | – | – | {reference} | not run | {why} |"
    final = result["final_eval"]
    status = mark(row, final["iqm"], final.get("iqm_ci_high"))
    source = f"reused `{Path(result['reused']).name}`" if result.get("reused") else "measured"
    cause = row.note if status in ("short", "within CI") and row.note else ""
    return (lead + f"| {result['env_steps_per_seed']:,} | {result['seeds']} "
            f"| {final['iqm']:.1f} [{final['iqm_ci_low']:.1f}, {final['iqm_ci_high']:.1f}] "
            f"| {reference} | {status} | {'; '.join(filter(None, [source, cause]))} |")


def render(machine: dict[str, Any], budget: common.Budget, rows: list[tuple[QualityRow, dict[str, Any]]]) -> str:
    """The suite's Markdown report."""
    lines = common.header("Learning quality: shipped configs against reference figures", machine, budget, [
        "each measured row: the shipped config at the reference's budget per seed, trained by `jaxrl train`'s "
        "code; IQM of the seeds' final greedy evaluation (10 episodes each) with a 95% bootstrap CI",
        "pass: IQM ≥ the reference; within CI: the reference lies inside the IQM's 95% CI; short: below it",
    ], timed=False)
    if budget.name == "tiny":
        lines += [f"**Tiny budget ({TINY_STEPS:,} steps, {TINY_SEEDS} seeds): checks the suite runs, not learning.**", ""]
    lines += ["| task | algorithm | config | env steps / seed | seeds | greedy-eval IQM [95% CI] | reference "
              "| mark | notes |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [row_cells(row, result) for row, result in rows]
    lines += ["", "Reference figures are copied from the project's REFERENCES.md (learning quality that a correct "
              "implementation reaches), with their sources."]
    return "\n".join(lines) + "\n"


def plot(rows: list[tuple[QualityRow, dict[str, Any]]]):
    """A figure writer: measured IQM with its CI as a fraction of the reference, one bar per row."""

    def write(out_dir: Path) -> Path | None:
        from jaxrl.analysis.plots import _pyplot, _save

        shown = [(row, result["final_eval"]) for row, result in rows
                 if result.get("status") == "ok" and row.reference is not None and row.reference.value > 0]
        if not shown:
            return None
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(8, 0.5 * len(shown) + 1.5))
        labels = [f"{row.algorithm} {row.task} ({row.steps:.0e})" for row, _ in shown]
        ratios = [final["iqm"] / row.reference.value for row, final in shown]
        low = [r - final["iqm_ci_low"] / row.reference.value for r, (row, final) in zip(ratios, shown)]
        high = [final["iqm_ci_high"] / row.reference.value - r for r, (row, final) in zip(ratios, shown)]
        colours = ["tab:green" if r >= 1 else "tab:orange" for r in ratios]
        ax.barh(labels, ratios, xerr=[low, high], color=colours, capsize=3)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set(xlabel="greedy-eval IQM / reference (95% CI)", title="Learning quality against references")
        return _save(fig, out_dir / "quality.png")

    return write


def run(budget: common.Budget, out_dir: Path, machine: dict[str, Any], timeout: float,
        only: Sequence[str] = (), config_dir: Path | None = None, reuse: Path | None = None,
        max_cpu_hours: float | None = None) -> list[Path]:
    """Runs (or reuses, or lists with the reason) every row, rewriting `quality.md/.json/.png`
    after each, and prints the table."""
    from jaxrl.bench import configs_folder

    config_dir = config_dir or configs_folder()
    max_cpu_hours = CPU_HOURS_LIMIT[budget.name] if max_cpu_hours is None else max_cpu_hours
    names = only or (TINY if budget.name == "tiny" else [row.id for row in ROWS])
    results: list[tuple[QualityRow, dict[str, Any]]] = []
    written: list[Path] = []
    for row in (r for r in ROWS if r.id in names):
        action, detail = plan(row, machine["platform"], reuse, max_cpu_hours)
        if action == "run":
            common.progress(f"{row.id}: {row.config} ({budget.name} budget)")
            result = measure(row, config_dir, budget.name, timeout)
        elif action == "reuse":
            result = from_summary(row, detail)
        else:
            result = {"id": row.id, "status": "skipped", "why": detail}
        results.append((row, result))
        markdown = render(machine, budget, results)
        written = common.write_report(out_dir, "quality", markdown,
                                      {"machine": machine, "budget": budget._asdict(),
                                       "rows": [{**row._asdict(), "result": result} for row, result in results]},
                                      [plot(results)])
    print(markdown)
    return written
