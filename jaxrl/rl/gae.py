"""Generalised advantage estimation that keeps termination and truncation apart."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def gae_advantages(
    rewards: chex.Array,
    values: chex.Array,
    next_values: chex.Array,
    terminated: chex.Array,
    truncated: chex.Array,
    *,
    gamma: float | chex.Array,
    gae_lambda: float | chex.Array,
    time_axis: int,
) -> tuple[chex.Array, chex.Array]:
    """GAE(λ) along `time_axis` (0: time-major [T, N], 1: batch-major [N, T]); returns
    (advantages, value targets), shaped like `rewards`.

    `time_axis` has no default because a wrong guess gives plausible numbers silently.
    `next_values[t]` is V of the observation reached by step t *before* any auto-reset
    (the env's final observation), so at a time-limit truncation the return is
    bootstrapped from the state the episode was cut in; only a true termination
    bootstraps with zero. The λ-recursion stops at every episode end of either kind.
    """
    chex.assert_equal_shape([rewards, values, next_values, terminated, truncated])
    rewards, values, next_values, terminated, truncated = (
        jnp.moveaxis(x, time_axis, 0) for x in (rewards, values, next_values, terminated, truncated))
    not_terminated = 1.0 - terminated.astype(jnp.float32)
    continues = not_terminated * (1.0 - truncated.astype(jnp.float32))
    deltas = rewards + gamma * not_terminated * next_values - values

    def backward(carry: chex.Array, step: tuple[chex.Array, chex.Array]):
        delta, cont = step
        advantage = delta + gamma * gae_lambda * cont * carry
        return advantage, advantage

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(deltas[0]), (deltas, continues), reverse=True, unroll=8
    )
    targets = advantages + values
    return jnp.moveaxis(advantages, 0, time_axis), jnp.moveaxis(targets, 0, time_axis)
