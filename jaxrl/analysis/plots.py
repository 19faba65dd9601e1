"""Learning-curve plots from a run's long-format metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _finish(fig, ax, title: str, ylabel: str, path: str | Path) -> Path:
    """Labels a learning-curve axis (x: env steps per seed), writes the PNG and frees the figure."""
    ax.set_xlabel("env steps per seed")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Writes a figure as PNG (creating its folder) and frees it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def hyperparameter_schedules(steps: np.ndarray, values: dict[str, np.ndarray], path: str | Path,
                             title: str) -> Path:
    """One panel per hyperparameter: every member's value over env steps ([points, members]),
    the schedules population-based training produced."""
    plt = _pyplot()
    fig, axes = plt.subplots(len(values), 1, figsize=(7, 2.6 * len(values)), dpi=120, squeeze=False)
    for ax, (name, table) in zip(axes[:, 0], values.items()):
        ax.plot(steps, table, linewidth=0.8, alpha=0.7, drawstyle="steps-post")
        ax.set_ylabel(name)
        ax.set_yscale("log" if np.nanmin(table) > 0 and np.nanmax(table) / np.nanmin(table) > 10 else "linear")
        ax.grid(alpha=0.3)
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("env steps per seed")
    return _save(fig, path)


def settings_curves(steps: np.ndarray, curves: dict[str, np.ndarray], path: str | Path,
                    title: str, ylabel: str = "episode return (training)") -> Path:
    """One line per hyperparameter setting (mean across its seeds, ±std band); each curve is
    [points, seeds] with NaN where a seed finished no episode."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    for i, (name, returns) in enumerate(curves.items()):
        returns = np.asarray(returns, dtype=np.float64)
        keep = ~np.all(np.isnan(returns), axis=1)
        x, returns = np.asarray(steps)[keep], returns[keep]
        mean, std = np.nanmean(returns, 1), np.nanstd(returns, 1)
        color = plt.get_cmap("tab10" if len(curves) <= 10 else "viridis")(i if len(curves) <= 10 else i / len(curves))
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.12, linewidth=0)
        ax.plot(x, mean, color=color, linewidth=1.6, label=name or "base")
    ax.legend(loc="best", fontsize=7, ncol=1 + len(curves) // 12)
    return _finish(fig, ax, title, ylabel, path)


def learning_curve(steps: np.ndarray, returns: np.ndarray, path: str | Path, title: str,
                   ylabel: str = "episode return (training)") -> Path:
    """Mean across seeds with a ±std band and a min–max band; `returns` is [points, seeds].

    Points where a seed finished no episode (NaN) are left out of that point's statistics.
    """
    plt = _pyplot()

    returns = np.asarray(returns, dtype=np.float64)
    keep = ~np.all(np.isnan(returns), axis=1)
    steps, returns = np.asarray(steps)[keep], returns[keep]
    mean, std = np.nanmean(returns, 1), np.nanstd(returns, 1)
    low, high = np.nanmin(returns, 1), np.nanmax(returns, 1)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    ax.fill_between(steps, low, high, color="C0", alpha=0.15, linewidth=0, label="min–max")
    # the std band is drawn inside the observed range: returns above the max never happened
    ax.fill_between(steps, np.maximum(mean - std, low), np.minimum(mean + std, high), color="C0",
                    alpha=0.3, linewidth=0, label="±1 std (within min–max)")
    ax.plot(steps, mean, color="C0", linewidth=2, label=f"mean of {returns.shape[1]} seeds")
    ax.legend(loc="lower right")
    return _finish(fig, ax, title, ylabel, path)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def optimization_history(trials: list[int], values: list[float | None], states: list[str],
                         path: str | Path, title: str) -> Path:
    """An Optuna sweep's trials in order: each complete trial's objective, the best so far,
    and pruned trials (at their last reported value) apart."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    done = [(t, v) for t, v, s in zip(trials, values, states) if s == "complete" and v is not None]
    cut = [(t, v) for t, v, s in zip(trials, values, states) if s == "pruned" and v is not None]
    if done:
        x, y = map(np.asarray, zip(*done))
        ax.scatter(x, y, s=18, color="tab:blue", label="complete trial", zorder=3)
        ax.step(x, np.maximum.accumulate(y), where="post", color="tab:red", label="best so far")
    if cut:
        x, y = zip(*cut)
        ax.scatter(x, y, s=14, marker="x", color="tab:gray", label="pruned (last reported value)")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def param_importances(importances: dict[str, float], path: str | Path, title: str) -> Path:
    """Horizontal bars: how much of the objective's variance each searched key explains."""
    plt = _pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(names)), dpi=120)
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    return _save(fig, path)
