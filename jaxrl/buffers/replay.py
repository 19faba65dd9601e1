"""A circular replay buffer with uniform or prioritised sampling (Schaul et al., 2016).

State is a pytree (`ReplayState`) whose arrays have a leading capacity axis, so a whole
population's buffers are one vmapped state, donated across chunks like the rest. Memory per
agent is capacity x the size of one transition (plus 8 bytes per slot for priorities).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp

from jaxrl.buffers import sum_tree


class ReplayState(NamedTuple):
    data: Any  # pytree of [capacity, ...] arrays
    position: chex.Array  # next slot to write
    size: chex.Array  # filled slots
    priorities: chex.Array  # sum-tree of p_i^alpha (zeros when unused)
    max_priority: chex.Array  # priority given to new transitions


class PrioritizedSample(NamedTuple):
    data: Any  # pytree of [batch, ...]
    indices: chex.Array
    weights: chex.Array  # importance weights, max-normalised


def init(example: Any, capacity: int, prioritized: bool = True) -> ReplayState:
    """An empty buffer for transitions shaped like `example` (one transition, no batch axis).
    A uniform buffer (`prioritized=False`) keeps no sum-tree, so adding skips its upkeep."""
    if capacity < 1:
        raise ValueError(f"replay capacity must be at least 1, got {capacity}")
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    priorities = sum_tree.init(capacity) if prioritized else jnp.zeros((1,), jnp.float32)  # a tree has >= 2
    return ReplayState(data, jnp.int32(0), jnp.int32(0), priorities, jnp.float32(1.0))


def is_prioritized(state: ReplayState) -> bool:
    """Whether the buffer keeps priorities (decided by its shapes, so known when tracing)."""
    return state.priorities.shape[-1] > 1


def empty_like(abstract: ReplayState) -> ReplayState:
    """An empty buffer with the shapes, dtypes and shardings of `abstract` (which may hold
    `jax.ShapeDtypeStruct`s with leading population axes), e.g. to resume without a saved buffer."""
    zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype, device=getattr(a, "sharding", None)),
                         abstract)
    return zeros._replace(max_priority=zeros.max_priority + 1.0)


def capacity_of(state: ReplayState) -> int:
    return jax.tree.leaves(state.data)[0].shape[0]


def add(state: ReplayState, batch: Any, valid: chex.Array | None = None) -> ReplayState:
    """Writes a batch [B, ...] of transitions at the write position, wrapping around;
    new transitions get the highest priority seen so far, so each is sampled soon.

    `valid` [B] (optional) marks the items to keep; the rest are dropped without taking a
    slot, so a fixed-shape batch can carry a variable number of transitions under `jit`.
    """
    capacity = capacity_of(state)
    count = jax.tree.leaves(batch)[0].shape[0]
    if valid is None:
        valid = jnp.ones((count,), bool)
    kept = jnp.cumsum(valid) - 1
    slots = jnp.where(valid, (state.position + kept) % capacity, capacity)  # capacity: dropped
    data = jax.tree.map(lambda store, new: store.at[slots].set(new, mode="drop"),
                        state.data, batch)
    priorities = state.priorities
    if is_prioritized(state):
        priorities = sum_tree.update(priorities, jnp.where(valid, slots, sum_tree.leaves_of(priorities)),
                                     jnp.full((count,), state.max_priority, jnp.float32))
    added = valid.sum(dtype=jnp.int32)
    return state._replace(data=data, position=(state.position + added) % capacity,
                          size=jnp.minimum(state.size + added, capacity), priorities=priorities)


def sample_uniform(state: ReplayState, key: chex.PRNGKey, batch_size: int) -> tuple[Any, chex.Array]:
    """`batch_size` transitions drawn uniformly (with replacement) from the filled slots."""
    indices = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
    return jax.tree.map(lambda x: x[indices], state.data), indices


def importance_weights(probabilities: chex.Array, size: chex.Array, beta: chex.Array) -> chex.Array:
    """(N * P(i))^-beta, divided by the batch's largest weight so weights only scale down."""
    weights = (size * probabilities) ** (-beta)
    return weights / jnp.max(weights)


def sample_prioritized(state: ReplayState, key: chex.PRNGKey, batch_size: int,
                       beta: chex.Array) -> PrioritizedSample:
    """`batch_size` transitions drawn with P(i) = p_i^alpha / sum_k p_k^alpha, O(log N) each."""
    indices = jnp.minimum(sum_tree.sample(state.priorities, key, batch_size),
                          jnp.maximum(state.size - 1, 0))
    total = jnp.maximum(sum_tree.total(state.priorities), 1e-30)  # an empty buffer samples slot 0
    probabilities = jnp.maximum(sum_tree.leaf_values(state.priorities, indices) / total, 1e-30)
    weights = importance_weights(probabilities, jnp.maximum(state.size, 1), beta)
    return PrioritizedSample(jax.tree.map(lambda x: x[indices], state.data), indices, weights)


def update_priorities(state: ReplayState, indices: chex.Array, td_errors: chex.Array,
                      alpha: chex.Array, eps: float = 1e-6) -> ReplayState:
    """Sets p_i = (|delta_i| + eps)^alpha for the sampled transitions."""
    priorities = (jnp.abs(td_errors) + eps) ** alpha
    return state._replace(priorities=sum_tree.update(state.priorities, indices, priorities),
                          max_priority=jnp.maximum(state.max_priority, priorities.max()))
