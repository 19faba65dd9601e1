"""Members of a population acting on each other: combiners and population-based training.

Every function takes population pytrees (a leading member axis [P]), per-member `scores`
(higher is better, e.g. recent mean return) and a `valid` mask (False for the padding
members of `jaxrl.population`, which are never copied from and never weigh in), and is
pure and jittable, so it runs on the sharded population between chunks.

- Combiners set members' networks from the others: `mean_of` (optionally weighted by score),
  `broadcast` of the best or a fixed member. A custom combiner is any function
  `(population_state, stats) -> population_state` (`stats`: the chunk's per-member metrics,
  `score` and `valid`; see `jaxrl.experiment.population_ops.chunk_stats`), named in a config
  as `combine.strategy: "module:function"`; `best_networks` is one, as an example.
- PBT (Jaderberg et al. 2017): `pbt_sources` picks, for each member in the bottom fraction, a
  member of the top fraction to copy (exploit); `perturb` multiplies the copied
  hyperparameters by random factors (explore).
"""

from __future__ import annotations

from typing import Any, Sequence

import chex
import jax
import jax.numpy as jnp

MODEL_FIELDS = ("params", "target_params", "ref_params")  # the networks an agent is made of
AGENT_FIELDS = MODEL_FIELDS + ("opt_state",)  # what PBT's exploit copies besides hyperparameters


def present(state: Any, names: Sequence[str]) -> tuple[str, ...]:
    """The fields of a state NamedTuple among `names` (DQN has target_params, GRPO ref_params)."""
    return tuple(name for name in names if name in getattr(state, "_fields", ()))


def score_weights(scores: chex.Array, valid: chex.Array, temperature: float | None = None) -> chex.Array:
    """Weights over members summing to 1: uniform over the valid ones, or (with `temperature`)
    a softmax of their scores. NaN scores (no finished episode) count as the worst."""
    if temperature is None:
        weights = valid.astype(jnp.float32)
    else:
        finite = jnp.where(jnp.isnan(scores), -jnp.inf, scores)
        logits = jnp.where(valid, finite / temperature, -jnp.inf)
        weights = jnp.exp(logits - jnp.max(logits))
    return weights / jnp.sum(weights)


def mean_of(tree: Any, weights: chex.Array) -> Any:
    """Every member becomes the `weights`-weighted mean of all members."""
    def mean(x):
        average = jnp.tensordot(weights.astype(jnp.float32), x.astype(jnp.float32), axes=1)
        return jnp.broadcast_to(average, x.shape).astype(x.dtype)
    return jax.tree.map(mean, tree)


def take_members(tree: Any, sources: chex.Array) -> Any:
    """Member i becomes member `sources[i]` (a copy of its arrays)."""
    return jax.tree.map(lambda x: x[sources], tree)


def best_index(scores: chex.Array, valid: chex.Array) -> chex.Array:
    """The valid member with the highest score (NaN scores count as the worst)."""
    return jnp.argmax(jnp.where(valid & ~jnp.isnan(scores), scores, -jnp.inf))


def broadcast(state: Any, index: chex.Array | int, fields: Sequence[str]) -> Any:
    """Every member's `fields` become member `index`'s."""
    sources = jnp.full(jax.tree.leaves(state)[0].shape[0], index, jnp.int32)
    return state._replace(**{f: take_members(getattr(state, f), sources) for f in fields})


def mean_params(state: Any, scores: chex.Array, valid: chex.Array,
                temperature: float | None = None) -> Any:
    """Combiner: every member's networks become the (score-weighted) mean of all members'."""
    weights = score_weights(scores, valid, temperature)
    fields = present(state, MODEL_FIELDS)
    return state._replace(**{f: mean_of(getattr(state, f), weights) for f in fields})


def best_member(state: Any, scores: chex.Array, valid: chex.Array) -> Any:
    """Combiner: every member takes the best member's networks and optimiser state."""
    return broadcast(state, best_index(scores, valid), present(state, AGENT_FIELDS))


def fixed_member(state: Any, index: int) -> Any:
    """Combiner: every member takes member `index`'s networks and optimiser state."""
    return broadcast(state, index, present(state, AGENT_FIELDS))


def best_networks(state: Any, stats: dict[str, Any]) -> Any:
    """An example custom combiner (`combine.strategy: "jaxrl.combine:best_networks"`): every
    member takes the best-scoring member's networks and keeps everything else its own (its
    optimiser state, envs, replay buffer), unlike the built-in `best`, which copies the
    optimiser state too."""
    index = best_index(jnp.asarray(stats["score"]), jnp.asarray(stats["valid"]))
    return broadcast(state, index, present(state, MODEL_FIELDS))


def pbt_sources(key: chex.PRNGKey, scores: chex.Array, valid: chex.Array,
                fraction: float) -> tuple[chex.Array, chex.Array]:
    """Exploit: (sources, replaced). Among the n valid members ranked by score, each of the
    bottom ceil(fraction * n) copies a uniformly drawn member of the top ceil(fraction * n);
    every other member (and padding) keeps itself."""
    size = scores.shape[0]
    count = jnp.sum(valid)
    cut = jnp.ceil(fraction * count).astype(jnp.int32)
    ranked = jnp.where(valid & ~jnp.isnan(scores), scores, -jnp.inf)
    ranked = jnp.where(valid, ranked, jnp.inf)  # padding sorts above everyone: never "bottom"
    order = jnp.argsort(ranked, stable=True)  # worst first; padding last
    rank = jnp.zeros(size, jnp.int32).at[order].set(jnp.arange(size, dtype=jnp.int32))
    replaced = valid & (rank < cut)
    top = order[jnp.clip(count - cut + jax.random.randint(key, (size,), 0, jnp.maximum(cut, 1)), 0, size - 1)]
    return jnp.where(replaced, top, jnp.arange(size)), replaced


def perturb(key: chex.PRNGKey, hparams: Any, replaced: chex.Array, names: Sequence[str],
            factors: tuple[float, float] = (0.8, 1.2),
            bounds: dict[str, tuple[float, float]] | None = None) -> Any:
    """Explore: for each replaced member, every hyperparameter in `names` is multiplied by one
    of `factors`, drawn at random, then clipped to its `bounds` (if any)."""
    bounds = bounds or {}
    keys = jax.random.split(key, len(names))
    changes = {}
    for subkey, name in zip(keys, names):
        value = getattr(hparams, name)
        factor = jnp.asarray(factors, jnp.float32)[jax.random.randint(subkey, value.shape, 0, len(factors))]
        new = value * factor
        if name in bounds:
            new = jnp.clip(new, *bounds[name])
        changes[name] = jnp.where(replaced, new, value)
    return hparams._replace(**changes)


def exploit_explore(key: chex.PRNGKey, state: Any, hparams: Any, scores: chex.Array, valid: chex.Array,
                    fraction: float, names: Sequence[str], factors: tuple[float, float] = (0.8, 1.2),
                    bounds: dict[str, tuple[float, float]] | None = None) -> tuple[Any, Any, chex.Array]:
    """One PBT step: the bottom `fraction` copy a top member's networks, optimiser state and
    hyperparameters, then perturb those hyperparameters. Returns (state, hparams, sources)."""
    exploit_key, explore_key = jax.random.split(key)
    sources, replaced = pbt_sources(exploit_key, scores, valid, fraction)
    fields = present(state, AGENT_FIELDS)
    state = state._replace(**{f: take_members(getattr(state, f), sources) for f in fields})
    hparams = perturb(explore_key, take_members(hparams, sources), replaced, names, factors, bounds)
    return state, hparams, sources
