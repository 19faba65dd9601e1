"""`jaxrl plot`: several runs side by side — learning curves with bands and final IQMs with CIs.

Curves are drawn against env steps per seed, so runs logged at different intervals line up.
Final figures come from each run's `summary.json` (greedy evaluation per seed) and are the
same numbers `jaxrl train` reported.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxrl.analysis.stats import aggregate, bootstrap_ci, iqm
from jaxrl.errors import RunDirError


class RunCurves(NamedTuple):
    label: str
    steps: np.ndarray  # [points]
    values: np.ndarray  # [points, seeds], NaN where a seed logged nothing
    final: np.ndarray | None  # [seeds] final greedy evaluation, when the run finished


def load_run_curves(run_dir: str | Path, metric: str = "episode_return", label: str | None = None) -> RunCurves:
    """One run's per-seed curve of `metric` from metrics.csv, and its final evaluation."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.csv"
    if not path.is_file():
        raise RunDirError(f"{run_dir} is not a jaxrl run folder (it has no metrics.csv)")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    if rows and metric not in rows[0]:
        raise RunDirError(f"{run_dir}/metrics.csv has no column {metric!r}; "
                          f"choose one of: {', '.join(k for k in rows[0] if k not in ('seed', 'update'))}")
    steps = sorted({int(r["env_steps"]) for r in rows})
    seeds = 1 + max((int(r["seed"]) for r in rows), default=-1)
    values = np.full((len(steps), seeds), np.nan)
    where = {s: i for i, s in enumerate(steps)}
    for r in rows:
        if r[metric] != "":
            values[where[int(r["env_steps"])], int(r["seed"])] = float(r[metric])
    summary = run_dir / "summary.json"
    final = np.array(json.loads(summary.read_text())["final_eval"]["per_seed"]) if summary.is_file() else None
    return RunCurves(label or run_dir.name, np.array(steps), values, final)


def curve_rows(run: RunCurves, seed: int = 0) -> list[dict]:
    """Per logged point: mean, std, min, max, IQM and its 95% bootstrap CI over seeds."""
    rows = []
    for step, values in zip(run.steps, run.values):
        present = values[~np.isnan(values)]
        if present.size == 0:
            continue
        low, high = bootstrap_ci(present, iqm, seed=seed)
        rows.append({"run": run.label, "env_steps": int(step), "mean": present.mean(), "std": present.std(),
                     "min": present.min(), "max": present.max(), "iqm": iqm(present),
                     "iqm_ci_low": low, "iqm_ci_high": high, "seeds": present.size})
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)


def save_figure_and_tables(fig: Any, out: Path, curve_table: list[dict],
                           final_table: list[dict]) -> dict[str, Path]:
    """Saves `fig` to `out` (PNG) and the tables beside it as `<out>.csv` and `<out>_final.csv`."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    written = {"plot": out}
    if curve_table:
        written["curves"] = out.with_suffix(".csv")
        _write_csv(written["curves"], curve_table)
    if final_table:
        written["final"] = out.with_name(out.stem + "_final.csv")
        _write_csv(written["final"], final_table)
    return written


def compare_runs(run_dirs: Sequence[str | Path], out: str | Path, metric: str = "episode_return",
                 labels: Sequence[str] | None = None) -> dict[str, Path]:
    """Writes `out` (PNG), `<out>.csv` (curve figures per point) and `<out>_final.csv`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if labels is not None and len(labels) != len(run_dirs):
        raise RunDirError(f"--labels gave {len(labels)} names for {len(run_dirs)} runs")
    runs = [load_run_curves(d, metric, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
    out = Path(out)
    fig, (curves, finals) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=120,
                                         gridspec_kw={"width_ratios": [2, 1]})
    curve_table: list[dict] = []
    final_table: list[dict] = []
    for color, run in enumerate(runs):
        rows = curve_rows(run)
        curve_table += rows
        steps = np.array([r["env_steps"] for r in rows])
        mean, std = np.array([r["mean"] for r in rows]), np.array([r["std"] for r in rows])
        low, high = np.array([r["min"] for r in rows]), np.array([r["max"] for r in rows])
        c = f"C{color}"
        curves.fill_between(steps, low, high, color=c, alpha=0.12, linewidth=0)
        curves.fill_between(steps, np.maximum(mean - std, low), np.minimum(mean + std, high),
                            color=c, alpha=0.25, linewidth=0)
        curves.plot(steps, mean, color=c, linewidth=2, label=f"{run.label} ({run.values.shape[1]} seeds)")
        if run.final is not None:
            stats = aggregate(run.final)
            final_table.append({"run": run.label, **stats})
            finals.errorbar([stats["iqm"]], [color], xerr=[[stats["iqm"] - stats["iqm_ci_low"]],
                                                             [stats["iqm_ci_high"] - stats["iqm"]]],
                            fmt="o", color=c, capsize=4)
    curves.set_xlabel("env steps per seed")
    curves.set_ylabel(metric.replace("_", " "))
    curves.set_title(f"{metric.replace('_', ' ')}: mean, ±std and min–max over seeds")
    curves.grid(alpha=0.3)
    curves.legend(loc="best")
    finals.set_yticks(range(len(runs)), [r.label for r in runs])
    finals.set_ylim(-0.5, len(runs) - 0.5)
    finals.set_xlabel("final greedy return: IQM, 95% bootstrap CI")
    finals.set_title("final evaluation")
    finals.grid(alpha=0.3, axis="x")
    return save_figure_and_tables(fig, out, curve_table, final_table)
