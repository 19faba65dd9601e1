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
    gamma: float | chex.Array,
    gae_lambda: float | chex.Array,
) -> tuple[chex.Array, chex.Array]:
    """GAE(λ) over a time-major batch [T, ...]; returns (advantages, value targets).

    `next_values[t]` is V of the observation reached by step t *before* any auto-reset
    (the env's final observation), so at a time-limit truncation the return is
    bootstrapped from the state the episode was cut in; only a true termination
    bootstraps with zero. The λ-recursion stops at every episode end of either kind.
    """
    chex.assert_equal_shape([rewards, values, next_values, terminated, truncated])
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
    return advantages, advantages + values
