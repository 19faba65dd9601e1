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
from jaxrl.errors import ConfigError, RunDirError


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
    points = _read_metric(path, metric)
    steps = sorted({step for step, _, _ in points})
    seeds = sorted({seed for _, seed, _ in points})
    if len(steps) * len(seeds) > 16 * len(points) + 4096:  # a real run logs every seed at every point
        raise RunDirError(f"{path} spreads {len(points):,} rows over {len(steps):,} env-step points and "
                          f"{len(seeds):,} seeds; it is not a metrics.csv written by jaxrl train")
    values = np.full((len(steps), len(seeds)), np.nan)
    where, column = {s: i for i, s in enumerate(steps)}, {s: i for i, s in enumerate(seeds)}
    for step, seed, value in points:
        if value is not None:
            values[where[step], column[seed]] = value
    return RunCurves(label or run_dir.name, np.array(steps), values, _final_returns(run_dir / "summary.json"))


def _read_metric(path: Path, metric: str) -> list[tuple[int, int, float | None]]:
    """(env_steps, seed, value or None) per row of a metrics.csv; a RunDirError naming the file
    and line for anything that is not the table `jaxrl train` writes."""
    not_ours = "it is not a metrics.csv written by jaxrl train (restore it, or leave this run out)"
    points = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            missing = [name for name in ("env_steps", "seed") if name not in columns]
            if missing:
                raise RunDirError(f"{path} has no {' or '.join(missing)} column; {not_ours}")
            if metric not in columns:
                raise RunDirError(f"{path} has no column {metric!r}; choose one of: "
                                  f"{', '.join(k for k in columns if k not in ('env_steps', 'seed', 'update'))}")
            for row in reader:
                try:
                    if None in row or None in row.values():
                        raise ValueError  # more or fewer fields than the header: cut or edited
                    point = (int(row["env_steps"]), int(row["seed"]),
                             float(row[metric]) if row[metric] != "" else None)
                except ValueError:
                    raise RunDirError(f"{path} line {reader.line_num} is cut short, has extra fields or "
                                      f"holds a non-number (env_steps, seed, {metric}); {not_ours}") from None
                points.append(point)
    except (UnicodeDecodeError, csv.Error):
        raise RunDirError(f"{path} is not a CSV text table; {not_ours}") from None
    except OSError as error:
        raise RunDirError(f"cannot read {path}: {error.strerror}") from None
    return points


def _final_returns(path: Path) -> np.ndarray | None:
    """summary.json's final greedy return per seed; None when the run has no final evaluation."""
    if not path.is_file():
        return None
    not_ours = "it is not a summary.json written by jaxrl train (restore it, or delete it to plot curves only)"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RunDirError(f"{path} is not JSON text; {not_ours}") from None
    except OSError as error:
        raise RunDirError(f"cannot read {path}: {error.strerror}") from None
    if not isinstance(summary, dict):
        raise RunDirError(f"{path} holds a JSON {type(summary).__name__}, not an object; {not_ours}")
    final = summary.get("final_eval")
    if final is None:  # stopped early: no final evaluation
        return None
    try:
        per_seed = np.asarray(final["per_seed"], dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        per_seed = None
    if per_seed is None or per_seed.ndim != 1 or per_seed.size == 0:
        raise RunDirError(f"{path} has no list of numbers at final_eval.per_seed; {not_ours}")
    return per_seed


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


FIGURE_FORMATS = ("png", "pdf", "svg")
RUN_FILES = ("metrics.csv", "summary.json", "config.yaml")  # what a plot reads from each run


def figure_paths(out: str | Path) -> dict[str, Path]:
    """The files a plot at `out` writes: the figure, `<out>.csv` and `<out>_final.csv`."""
    out = Path(out)
    return {"plot": out, "curves": out.with_suffix(".csv"), "final": out.with_name(out.stem + "_final.csv")}


def check_figure_out(out: str | Path, run_dirs: Sequence[str | Path]) -> Path:
    """`out` as a figure `jaxrl plot` can write without touching the runs it reads; a one-line
    error naming the supported formats otherwise. Checked before any run is read."""
    out = Path(out)
    formats = ", ".join(f".{name}" for name in FIGURE_FORMATS)
    if out.is_dir():
        raise RunDirError(f"--out {out} is a folder; give a figure file ending in {formats} "
                          f"(e.g. {out / 'comparison.png'})")
    if out.suffix.lower().lstrip(".") not in FIGURE_FORMATS:
        kind = f"the extension {out.suffix}" if out.suffix else "no extension"
        raise ConfigError(f"--out {out}: cannot write a figure with {kind}; end the name in one of {formats}")
    folder = next(parent for parent in out.absolute().parents if parent.exists())
    if not folder.is_dir():
        raise RunDirError(f"--out {out}: {folder} is a file, not a folder")
    inputs = {(Path(d) / name).resolve() for d in run_dirs for name in RUN_FILES}
    for path in figure_paths(out).values():
        if path.is_dir():
            raise RunDirError(f"--out {out} would write {path}, which is a folder; choose another --out")
        if path.resolve() in inputs:
            raise RunDirError(f"--out {out} would overwrite {path}, which a plotted run needs; "
                              f"choose another --out")
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]))
        writer.writeheader()
        writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows)


def save_figure_and_tables(fig: Any, out: Path, curve_table: list[dict],
                           final_table: list[dict]) -> dict[str, Path]:
    """Saves `fig` to `out` (.png, .pdf or .svg) and the tables beside it as `<out>.csv` and
    `<out>_final.csv`."""
    import matplotlib.pyplot as plt

    paths = figure_paths(out)
    written = {"plot": out}
    try:
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        if curve_table:
            written["curves"] = paths["curves"]
            _write_csv(written["curves"], curve_table)
        if final_table:
            written["final"] = paths["final"]
            _write_csv(written["final"], final_table)
    except OSError as error:
        raise RunDirError(f"cannot write the plot {out}: {error.strerror or error}") from None
    finally:
        plt.close(fig)
    return written


def compare_runs(run_dirs: Sequence[str | Path], out: str | Path, metric: str = "episode_return",
                 labels: Sequence[str] | None = None) -> dict[str, Path]:
    """Writes `out` (.png, .pdf or .svg), `<out>.csv` (curve figures per point) and `<out>_final.csv`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if labels is not None and len(labels) != len(run_dirs):
        raise ConfigError(f"--labels gave {len(labels)} names for {len(run_dirs)} runs; give one name per run")
    out = check_figure_out(out, run_dirs)
    runs = [load_run_curves(d, metric, labels[i] if labels else None) for i, d in enumerate(run_dirs)]
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
