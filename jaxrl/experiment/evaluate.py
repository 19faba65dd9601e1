"""`jaxrl eval`: load a run's checkpoint and evaluate every member on fresh episodes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np

from jaxrl import config as config_lib
from jaxrl import population
from jaxrl.analysis import aggregate
from jaxrl.errors import ConfigError, RunDirError
from jaxrl.experiment.checkpoints import Checkpointer
from jaxrl.experiment.run_dir import write_json
from jaxrl.experiment.train import build


def evaluate_run(run_dir: str | Path, *, episodes: int | None = None,
                 deterministic: bool | None = None, seed_index: int | None = None,
                 devices: Sequence[Any] | None = None) -> dict[str, Any]:
    """Evaluates the newest readable checkpoint of `run_dir`; writes `evaluations/<time>.json`.

    With the run's own episode count and policy mode, the returns equal the run's final
    evaluation (same keys), which makes the checkpoint's content checkable.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise RunDirError(f"{run_dir} is not a jaxrl run folder (it has no config.yaml)")
    config = config_lib.load(run_dir / "config.yaml")
    changes = {}
    if episodes is not None:
        changes["episodes"] = episodes
    if deterministic is not None:
        changes["deterministic"] = deterministic
    config = dataclasses.replace(config, eval=dataclasses.replace(config.eval, **changes))
    if seed_index is not None and not 0 <= seed_index < config.seeds:
        raise ConfigError(f"--seed-index {seed_index} is out of range: the run has seeds "
                          f"0..{config.seeds - 1}")
    built = build(config)
    pop = population.Population(built.algo, config.seeds, devices=devices, evaluator=built.evaluator)
    hparams = population.broadcast_hparams(built.algo.default_hparams, config.seeds)
    abstract = pop.abstract_state(population.stream_keys(config.seed, config.seeds, 0), hparams)
    checkpointer = Checkpointer(run_dir / "checkpoints", read_only=True)
    try:
        restored = checkpointer.restore_latest(abstract)
    finally:
        checkpointer.close()
    eval_keys = population.stream_keys(config.seed, config.seeds, population.EVAL_STREAM)
    chunk = int(restored.progress.get("chunk", 0))
    keys = jax.vmap(lambda k: jax.random.fold_in(k, chunk))(eval_keys)
    returns = np.asarray(jax.device_get(pop.evaluate(restored.state, keys)))  # [seeds, episodes]
    per_seed = returns.mean(axis=1)
    chosen = list(range(config.seeds)) if seed_index is None else [seed_index]
    result = {
        "run_dir": str(run_dir), "checkpoint_update": restored.step,
        "env_steps_per_seed": restored.progress.get("env_steps"),
        "episodes_per_seed": config.eval.episodes, "deterministic": config.eval.deterministic,
        "seeds": chosen, "per_seed": [round(float(per_seed[i]), 3) for i in chosen],
        "episode_returns": {str(i): [round(float(r), 3) for r in returns[i]] for i in chosen},
        **aggregate(per_seed[chosen]),
    }
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    (run_dir / "evaluations").mkdir(exist_ok=True)
    write_json(run_dir / "evaluations" / f"{stamp}.json", result)
    return result


def format_evaluation(result: dict[str, Any]) -> str:
    """The table `jaxrl eval` prints."""
    mode = "greedy" if result["deterministic"] else "stochastic"
    lines = [f"{mode} evaluation of {result['run_dir']} at update {result['checkpoint_update']} "
             f"({result['episodes_per_seed']} episodes per seed):"]
    lines += [f"  seed {seed:>4}: {value:9.2f}" for seed, value in zip(result["seeds"], result["per_seed"])]
    if len(result["seeds"]) > 1:
        lines.append(f"  mean {result['mean']:.1f}   std {result['std']:.1f}   IQM {result['iqm']:.1f} "
                     f"[95% CI {result['iqm_ci_low']:.1f}, {result['iqm_ci_high']:.1f}]   "
                     f"min {result['min']:.1f}   max {result['max']:.1f}")
    return "\n".join(lines)
