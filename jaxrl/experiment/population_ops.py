"""Between chunks: population-based training and combiners as a config's `pbt:` and
`combine:` sections ask, on the whole (sharded) population, through `jaxrl.combine`.

Members are ranked by a chunk metric (the mean return of the episodes they finished in that
chunk, by default). Every member's current perturbed hyperparameters and its PBT parent go
into the chunk's metrics (`hp_<name>`, `pbt_parent`), so `metrics.csv` holds each member's
lineage and hyperparameter schedule.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable

import jax
import numpy as np

from jaxrl import combine
from jaxrl.population import ChunkReport, Population

PBT_STREAM = 7  # a key stream of its own, apart from init/eval
UNIT_INTERVAL = ("gamma", "gae_lambda", "clip_eps", "tau", "eps_start", "eps_end",
                 "eps_decay_fraction", "per_alpha", "per_beta_start")


def every_chunks(every_env_steps: int, chunk_env_steps: int) -> int:
    """Chunks between two applications (0: never)."""
    return math.ceil(every_env_steps / chunk_env_steps) if every_env_steps else 0


def _padded(values: np.ndarray | None, size: int) -> np.ndarray:
    """Per-member scores over the padded population; padding (and missing) scores are NaN."""
    out = np.full(size, np.nan, np.float32)
    if values is not None:
        out[:len(values)] = values
    return out


def make_between_chunks(config: Any, pop: Population, num_updates: int, updates_per_chunk: int,
                        env_steps_per_update: int) -> Callable[[ChunkReport, Any, Any], tuple] | None:
    """The `between_chunks` hook of `population.run` for `config` (None when neither PBT nor
    a combiner is on)."""
    pbt, comb = config.pbt, config.combine
    chunk_steps = updates_per_chunk * env_steps_per_update
    pbt_every = every_chunks(pbt.every_env_steps, chunk_steps)
    comb_every = every_chunks(comb.every_env_steps, chunk_steps) if comb.strategy != "none" else 0
    if not pbt_every and not comb_every:
        return None
    valid = np.arange(pop.padded_members) < pop.num_members
    bounds = {name: (0.0, 1.0) for name in UNIT_INTERVAL}
    exploit = jax.jit(partial(combine.exploit_explore, fraction=pbt.fraction, names=pbt.hyperparameters,
                              factors=tuple(pbt.factors), bounds=bounds))
    combiners = {
        "mean": lambda state, scores: combine.mean_params(state, scores, valid),
        "weighted_mean": lambda state, scores: combine.mean_params(state, scores, valid, comb.temperature),
        "best": lambda state, scores: combine.best_member(state, scores, valid),
        "fixed": lambda state, scores: combine.fixed_member(state, comb.member),
    }
    combiner = jax.jit(combiners.get(comb.strategy, lambda state, scores: state))
    base_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), PBT_STREAM)

    def settle(tree: Any) -> Any:
        """Back where the population keeps it: on its mesh, or (split) in host memory."""
        return jax.tree.map(np.asarray, pop.fetch(tree)) if pop.split else jax.device_put(tree, pop.sharding)

    def between_chunks(report: ChunkReport, state: Any, hparams: Any) -> tuple[Any, Any, dict]:
        members = pop.num_members
        parents = np.arange(members)
        if report.updates_done < num_updates:  # nothing to change after the last chunk
            if pbt_every and (report.chunk + 1) % pbt_every == 0:
                scores = _padded(report.metrics.get(pbt.score), pop.padded_members)
                key = jax.random.fold_in(base_key, report.chunk)
                state, hparams, sources = exploit(key, state, hparams, scores, valid)
                state, hparams = settle(state), settle(hparams)
                parents = np.asarray(pop.fetch(sources))[:members]
            if comb_every and (report.chunk + 1) % comb_every == 0:
                scores = _padded(report.metrics.get(comb.score), pop.padded_members)
                state = settle(combiner(state, scores))
        extra = {"pbt_parent": parents.astype(np.float64)} if pbt_every else {}
        for name in pbt.hyperparameters:
            extra[f"hp_{name}"] = np.asarray(pop.fetch(getattr(hparams, name)), np.float64)[:members]
        return state, hparams, extra

    return between_chunks


def hparams_to_json(hparams: Any) -> dict[str, list[float]]:
    """Every member's hyperparameters as plain lists (checkpoint progress records)."""
    return {name: [float(x) for x in np.asarray(value)] for name, value in hparams._asdict().items()}


def hparams_from_json(record: dict[str, list[float]], like: Any) -> Any:
    """The inverse of `hparams_to_json`, shaped like the algorithm's `HParams`."""
    return like._replace(**{name: np.asarray(record[name], np.float32) for name in like._fields})
