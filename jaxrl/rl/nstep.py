"""n-step returns for replay: each window of n steps becomes one transition to store."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp


class NStepTargets(NamedTuple):
    """For window t: G = sum_k gamma^k r_{t+k} up to the first episode end (or n steps),
    the factor `discount` that multiplies the bootstrap value, and the step `last` whose
    final observation is bootstrapped from."""

    returns: chex.Array
    discounts: chex.Array
    last: chex.Array


def n_step_targets(rewards: chex.Array, terminated: chex.Array, truncated: chex.Array,
                   gamma: float | chex.Array, n: int) -> NStepTargets:
    """n-step targets for every window start t in [0, L - n] of a time-major sequence [L, ...].

    A window stops at the first step k where the episode ended. After a termination the
    bootstrap factor is 0; after a truncation (time limit) it is gamma^(k+1), and the value
    comes from that step's final observation (before auto-reset), so cut episodes are not
    mistaken for finished ones. Without an episode end the window bootstraps from the
    observation reached by its n-th step with factor gamma^n.
    """
    chex.assert_equal_shape([rewards, terminated, truncated])
    length = rewards.shape[0]
    if not 1 <= n <= length:
        raise ValueError(f"n_steps must lie in [1, {length}] for a sequence of {length} steps, got {n}")
    starts = length - n + 1
    rewards = rewards.astype(jnp.float32)
    ended = jnp.logical_or(terminated, truncated)
    not_terminated = 1.0 - terminated.astype(jnp.float32)
    # Process the n offsets from last to first: each earlier step either ends its window or
    # extends the return of the rest of the window by one discounted reward.
    init = NStepTargets(
        rewards[n - 1:n - 1 + starts],
        gamma * not_terminated[n - 1:n - 1 + starts],
        jnp.broadcast_to(jnp.arange(starts).reshape((starts,) + (1,) * (rewards.ndim - 1)) + n - 1,
                         rewards[:starts].shape))

    def back(carry: NStepTargets, offset: chex.Array) -> tuple[NStepTargets, None]:
        reward = jax.lax.dynamic_slice_in_dim(rewards, offset, starts)
        done = jax.lax.dynamic_slice_in_dim(ended, offset, starts)
        alive = jax.lax.dynamic_slice_in_dim(not_terminated, offset, starts)
        here = jnp.broadcast_to(
            jnp.arange(starts).reshape((starts,) + (1,) * (rewards.ndim - 1)) + offset,
            carry.last.shape)
        return NStepTargets(
            jnp.where(done, reward, reward + gamma * carry.returns),
            jnp.where(done, gamma * alive, gamma * carry.discounts),
            jnp.where(done, here, carry.last)), None

    targets, _ = jax.lax.scan(back, init, jnp.arange(n - 2, -1, -1))
    return targets
