"""`jaxrl plot --grpo-groups`: how GRPO's group size G changes learning, per environment.

Reads the runs of a G sweep (one run folder per G and env), and draws for each env the
mean learning curve over seeds (±std band) for every G, next to the final greedy return
against G (IQM with its 95% bootstrap CI, and the mean). The same figures go to CSVs.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from jaxrl.analysis.compare import (
    RunCurves, check_figure_out, curve_rows, load_run_curves, save_figure_and_tables,
)
from jaxrl.analysis.stats import aggregate
from jaxrl.config import read_yaml
from jaxrl.errors import RunDirError


class SweepRun(NamedTuple):
    env_id: str
    group_size: int
    curves: RunCurves


def load_sweep_run(run_dir: str | Path, metric: str) -> SweepRun:
    """A GRPO run's env id, group size and curves; other runs are refused by name."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise RunDirError(f"{run_dir} is not a jaxrl run folder (it has no config.yaml)")
    config = read_yaml(config_path)  # binary or broken YAML is one ConfigError naming the file
    algo, env = config.get("algo"), config.get("env")
    algo, env = (algo if isinstance(algo, dict) else {}), (env if isinstance(env, dict) else {})
    if algo.get("name") != "grpo":
        raise RunDirError(f"{run_dir} is a {algo.get('name')} run; --grpo-groups compares GRPO "
                          f"runs that differ in algo.group_size")
    group_size, env_id = algo.get("group_size"), env.get("id")
    if not isinstance(group_size, int) or isinstance(group_size, bool) or not isinstance(env_id, str):
        raise RunDirError(f"{config_path} has no integer algo.group_size and env.id; it is not "
                          f"the config.yaml jaxrl train writes")
    return SweepRun(env_id, group_size, load_run_curves(run_dir, metric, label=f"G={group_size}"))


def group_sweep_rows(runs: Sequence[SweepRun]) -> list[dict]:
    """Final greedy return per (env, G): IQM with CI, mean, std, min, max over seeds."""
    rows = []
    for run in sorted(runs, key=lambda r: (r.env_id, r.group_size)):
        if run.curves.final is not None:
            rows.append({"env": run.env_id, "group_size": run.group_size, **aggregate(run.curves.final)})
    return rows


def plot_group_sweep(run_dirs: Sequence[str | Path], out: str | Path,
                     metric: str = "episode_return") -> dict[str, Path]:
    """Writes `out` (PNG, one row per env), `<out>.csv` (curves) and `<out>_final.csv`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = check_figure_out(out, run_dirs)
    runs = [load_sweep_run(d, metric) for d in run_dirs]
    seen: dict[tuple[str, int], str] = {}
    for run_dir, run in zip(run_dirs, runs):
        key = (run.env_id, run.group_size)
        if key in seen:
            raise RunDirError(f"{seen[key]} and {run_dir} are both {run.env_id} with "
                              f"G={run.group_size}; pass one run per env and group size")
        seen[key] = str(run_dir)
    envs = sorted({run.env_id for run in runs})
    fig, axes = plt.subplots(len(envs), 2, figsize=(12, 4.2 * len(envs)), dpi=120, squeeze=False,
                             gridspec_kw={"width_ratios": [2, 1]})
    curve_table: list[dict] = []
    final_table = group_sweep_rows(runs)
    for (curves_ax, final_ax), env_id in zip(axes, envs):
        members = sorted((r for r in runs if r.env_id == env_id), key=lambda r: r.group_size)
        for color, run in enumerate(members):
            rows = curve_rows(run.curves)
            curve_table += [{"env": env_id, "group_size": run.group_size, **row} for row in rows]
            steps = np.array([r["env_steps"] for r in rows])
            mean, std = np.array([r["mean"] for r in rows]), np.array([r["std"] for r in rows])
            curves_ax.fill_between(steps, mean - std, mean + std, color=f"C{color}", alpha=0.2, linewidth=0)
            curves_ax.plot(steps, mean, color=f"C{color}", linewidth=2, marker="o" if len(steps) < 3 else None,
                           label=f"G={run.group_size} ({run.curves.values.shape[1]} seeds)")
        curves_ax.set_title(f"{env_id}: {metric.replace('_', ' ')}, mean ±std over seeds")
        curves_ax.set_xlabel("env steps per seed")
        curves_ax.grid(alpha=0.3)
        curves_ax.legend(loc="best")
        finals = [row for row in final_table if row["env"] == env_id]
        if finals:
            g = np.array([row["group_size"] for row in finals])
            centre = np.array([row["iqm"] for row in finals])
            errors = [centre - np.array([row["iqm_ci_low"] for row in finals]),
                      np.array([row["iqm_ci_high"] for row in finals]) - centre]
            final_ax.errorbar(g, centre, yerr=errors, fmt="o-", capsize=4, label="IQM, 95% CI")
            final_ax.plot(g, [row["mean"] for row in finals], "s--", alpha=0.7, label="mean")
            final_ax.set_xscale("log", base=2)
            final_ax.set_xticks(g, [str(v) for v in g])
            final_ax.legend(loc="best")
        final_ax.set_title(f"{env_id}: final greedy return vs G")
        final_ax.set_xlabel("group size G")
        final_ax.grid(alpha=0.3)
    return save_figure_and_tables(fig, out, curve_table, final_table)
