"""`train`: config -> env -> algorithm -> population run -> run folder, with a progress bar."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from jaxrl import population
from jaxrl.algos import REGISTRY as ALGOS
from jaxrl.algos.base import Algorithm
from jaxrl.analysis import aggregate
from jaxrl.analysis.plots import learning_curve
from jaxrl.config import Config, dump
from jaxrl.envs import make_vec
from jaxrl.evaluation import episode_limit, make_evaluator
from jaxrl.experiment.run_dir import (
    MetricsWriter, append_jsonl, create_run_dir, environment_versions, write_json,
)


class Built(NamedTuple):
    algo: Algorithm
    evaluator: Any
    updates_per_chunk: int
    eval_every_chunks: int


def build(config: Config) -> Built:
    """The algorithm, evaluator and chunking that `config` describes (nothing runs yet)."""
    env_kwargs = dict(num_envs=config.env.num_envs, normalize_obs=config.env.normalize_obs,
                      normalize_reward=config.env.normalize_reward, gamma=config.algo.gamma,
                      env_kwargs=config.env.kwargs)
    env, env_params = make_vec(config.env.id, **env_kwargs)
    algo = ALGOS[config.algo.name].make(config.algo, env, env_params, config.total_env_steps)
    eval_env, _ = make_vec(config.env.id, **{**env_kwargs, "num_envs": config.eval.episodes},
                           update_stats=False)
    max_steps = config.eval.max_steps or episode_limit(env_params)
    evaluator = make_evaluator(algo, eval_env, env_params, max_steps, config.eval.deterministic)
    updates_per_chunk = max(1, config.log_every_env_steps // algo.env_steps_per_update)
    chunk_steps = updates_per_chunk * algo.env_steps_per_update
    eval_every = math.ceil(config.eval.every_env_steps / chunk_steps) if config.eval.every_env_steps else 0
    return Built(algo, evaluator, updates_per_chunk, eval_every)


class _Progress:
    """tqdm bar over updates with SPS and the population's mean/min training return."""

    def __init__(self, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="upd", disable=not enabled, file=sys.stderr,
                        dynamic_ncols=True, desc="training")
        self.bar.set_postfix_str("compiling...")

    def update(self, report: population.ChunkReport, num_members: int, steps_per_update: int,
               updates: int) -> None:
        returns = report.metrics.get("episode_return")
        sps = updates * steps_per_update * num_members / max(report.seconds, 1e-9)
        text = f"{sps:,.0f} steps/s"
        if returns is not None and not np.all(np.isnan(returns)):
            text += f" | return mean {np.nanmean(returns):.1f} min {np.nanmin(returns):.1f}"
        self.bar.set_postfix_str(text)
        self.bar.update(updates)

    def close(self) -> None:
        self.bar.close()


def _metric_rows(report: population.ChunkReport, steps_per_update: int,
                 num_members: int, updates: int) -> list[dict[str, Any]]:
    sps = updates * steps_per_update * num_members / max(report.seconds, 1e-9)
    eval_mean = None if report.eval_returns is None else report.eval_returns.mean(axis=1)
    rows = []
    for member in range(num_members):
        row: dict[str, Any] = {"env_steps": report.env_steps, "update": report.updates_done,
                               "seed": member}
        row.update({name: float(values[member]) for name, values in sorted(report.metrics.items())})
        row["sps"] = round(sps, 1)
        row["eval_return"] = float("nan") if eval_mean is None else float(eval_mean[member])
        rows.append(row)
    return rows


def train(config: Config, run_dir: str | Path, *, progress: bool = True,
          devices: Sequence[Any] | None = None) -> dict[str, Any]:
    """Trains `config.seeds` members, writes the run folder and returns the summary.

    Everything that can be wrong with the config (env id, action space, shapes) is checked
    by `build` before the run folder is created, so a bad config leaves nothing behind.
    """
    built = build(config)
    run_dir = create_run_dir(run_dir)
    (run_dir / "config.yaml").write_text(dump(config))
    metrics_writer = MetricsWriter(run_dir / "metrics.csv")
    timings = run_dir / "timings.jsonl"
    algo, members = built.algo, config.seeds
    curve_steps: list[int] = []
    curve_returns: list[np.ndarray] = []
    bar = _Progress(algo.num_updates, progress)
    last_updates = [0]

    def on_start(pop: population.Population) -> None:
        append_jsonl(timings, {"event": "init", "compile_seconds": round(pop.compile_seconds, 3),
                               "devices": pop.mesh.size})

    def on_chunk(report: population.ChunkReport) -> None:
        updates = report.updates_done - last_updates[0]
        last_updates[0] = report.updates_done
        metrics_writer.write(_metric_rows(report, algo.env_steps_per_update, members, updates))
        append_jsonl(timings, {
            "event": "chunk", "chunk": report.chunk, "updates": updates,
            "env_steps_per_member": report.env_steps, "seconds": round(report.seconds, 4),
            "sps": round(updates * algo.env_steps_per_update * members / max(report.seconds, 1e-9), 1),
            "eval_seconds": round(report.eval_seconds, 4)})
        curve_steps.append(report.env_steps)
        curve_returns.append(report.metrics.get("episode_return", np.full(members, np.nan)))
        bar.update(report, members, algo.env_steps_per_update, updates)

    start = time.perf_counter()
    try:
        result = population.run(
            algo, members, seed=config.seed, updates_per_chunk=built.updates_per_chunk,
            evaluator=built.evaluator, eval_every_chunks=built.eval_every_chunks, devices=devices,
            on_chunk=on_chunk, on_start=on_start)
    finally:
        bar.close()
    wall = time.perf_counter() - start
    append_jsonl(timings, {"event": "end", "compile_seconds": round(result.compile_seconds, 3),
                           "steady_sps": round(result.steady_sps, 1), "wall_seconds": round(wall, 3)})

    final = result.final_eval_returns.mean(axis=1)
    summary = {
        "env": config.env.id, "algo": config.algo.name, "seeds": members,
        "total_env_steps_per_seed": result.reports[-1].env_steps,
        "final_eval": {"episodes_per_seed": config.eval.episodes,
                       "deterministic": config.eval.deterministic,
                       "per_seed": [round(float(x), 3) for x in final], **aggregate(final)},
        "steady_sps": result.steady_sps, "compile_seconds": result.compile_seconds,
        "wall_seconds": wall, "devices": result.num_devices, "versions": environment_versions(),
    }
    write_json(run_dir / "summary.json", summary)
    learning_curve(np.array(curve_steps), np.stack(curve_returns), run_dir / "plots" / "learning_curve.png",
                   title=f"{config.algo.name.upper()} on {config.env.id} ({members} seeds)")
    summary["run_dir"] = str(run_dir)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The short final table the CLI prints."""
    ev = summary["final_eval"]
    lines = [
        f"final greedy evaluation over {summary['seeds']} seeds "
        f"({ev['episodes_per_seed']} episodes each, {summary['total_env_steps_per_seed']:,} env steps/seed):",
        f"  mean {ev['mean']:.1f}   std {ev['std']:.1f}   "
        f"IQM {ev['iqm']:.1f} [95% CI {ev['iqm_ci_low']:.1f}, {ev['iqm_ci_high']:.1f}]   "
        f"min {ev['min']:.1f}   max {ev['max']:.1f}",
        f"  steady {summary['steady_sps']:,.0f} env steps/s on {summary['devices']} "
        f"{summary['versions']['platform']} device(s); compile {summary['compile_seconds']:.1f} s; "
        f"wall {summary['wall_seconds']:.1f} s",
        f"run folder: {summary['run_dir']}",
    ]
    return "\n".join(lines)
