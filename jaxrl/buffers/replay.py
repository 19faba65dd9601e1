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


class Sample(NamedTuple):
    """What both samplers return, so a learner reads `sample.weights` whichever it uses."""

    data: Any  # pytree of [batch, ...]
    indices: chex.Array  # the slots drawn, for `update_priorities`
    weights: chex.Array  # importance weights, max-normalised (ones when sampled uniformly)


def init(example: Any, capacity: int, *, prioritized: bool = False) -> ReplayState:
    """An empty buffer for transitions shaped like `example` (one transition, no batch axis).
    A uniform buffer (the default) keeps no sum-tree, so adding skips its upkeep; only a
    `prioritized=True` one can be passed to `sample_prioritized` and `update_priorities`."""
    if capacity < 1:
        raise ValueError(f"replay capacity must be at least 1, got {capacity}")
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    priorities = sum_tree.init(capacity) if prioritized else jnp.zeros((1,), jnp.float32)  # a tree has >= 2
    return ReplayState(data, jnp.int32(0), jnp.int32(0), priorities, jnp.float32(1.0))


def is_prioritized(state: ReplayState) -> bool:
    """Whether the buffer keeps priorities (decided by its shapes, so known when tracing)."""
    return state.priorities.shape[-1] > 1


def _require_priorities(state: ReplayState, caller: str) -> None:
    """Refuses, when tracing, a uniform buffer where priorities are needed (it has no sum-tree)."""
    if not is_prioritized(state):
        raise ValueError(f"{caller} needs a buffer that keeps priorities, but this one was made "
                         f"without them; create it with buffers.init(..., prioritized=True)")


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


def sample_uniform(state: ReplayState, key: chex.PRNGKey, batch_size: int) -> Sample:
    """`batch_size` transitions drawn uniformly (with replacement) from the filled slots,
    with weights of ones; works on either kind of buffer."""
    indices = jax.random.randint(key, (batch_size,), 0, jnp.maximum(state.size, 1))
    return Sample(jax.tree.map(lambda x: x[indices], state.data), indices,
                  jnp.ones((batch_size,), jnp.float32))


def importance_weights(probabilities: chex.Array, size: chex.Array, beta: chex.Array) -> chex.Array:
    """(N * P(i))^-beta, divided by the batch's largest weight so weights only scale down."""
    weights = (size * probabilities) ** (-beta)
    return weights / jnp.max(weights)


def sample_prioritized(state: ReplayState, key: chex.PRNGKey, batch_size: int,
                       beta: chex.Array) -> Sample:
    """`batch_size` transitions drawn with P(i) = p_i^alpha / sum_k p_k^alpha, O(log N) each,
    with importance weights for `beta`; needs a buffer made with `prioritized=True`."""
    _require_priorities(state, "sample_prioritized")
    indices = jnp.minimum(sum_tree.sample(state.priorities, key, batch_size),
                          jnp.maximum(state.size - 1, 0))
    total = jnp.maximum(sum_tree.total(state.priorities), 1e-30)  # an empty buffer samples slot 0
    probabilities = jnp.maximum(sum_tree.leaf_values(state.priorities, indices) / total, 1e-30)
    weights = importance_weights(probabilities, jnp.maximum(state.size, 1), beta)
    return Sample(jax.tree.map(lambda x: x[indices], state.data), indices, weights)


def update_priorities(state: ReplayState, indices: chex.Array, td_errors: chex.Array,
                      alpha: chex.Array, eps: float = 1e-6) -> ReplayState:
    """Sets p_i = (|delta_i| + eps)^alpha for the sampled transitions; needs a buffer made
    with `prioritized=True`."""
    _require_priorities(state, "update_priorities")
    priorities = (jnp.abs(td_errors) + eps) ** alpha
    return state._replace(priorities=sum_tree.update(state.priorities, indices, priorities),
                          max_priority=jnp.maximum(state.max_priority, priorities.max()))
