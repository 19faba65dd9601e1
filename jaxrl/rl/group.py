"""GRPO's critic-free advantages: returns normalised within a group of rollouts that share
a start state, per trajectory or per time step."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def reward_to_go(rewards: chex.Array, alive: chex.Array, gamma: float | chex.Array) -> chex.Array:
    """G_t = sum_{k >= t} gamma^(k - t) r_k alive_k over a time-major batch [T, ...].

    `alive[t]` is false once the rollout's first episode has ended, so later (padding)
    rewards never count.
    """
    masked = rewards * alive.astype(rewards.dtype)

    def back(carry, reward):
        carry = reward + gamma * carry
        return carry, carry

    _, returns = jax.lax.scan(back, jnp.zeros_like(masked[0]), masked, reverse=True)
    return returns


def group_normalize(values: chex.Array, mask: chex.Array | None = None,
                    eps: float = 1e-8) -> chex.Array:
    """(v - mean) / (std + eps) over the last (group) axis, counting only `mask`ed members.

    The std is the population one (ddof 0). Entries outside the mask, and groups whose
    members all agree, get advantage 0.
    """
    mask = jnp.ones_like(values, bool) if mask is None else mask
    weights = mask.astype(values.dtype)
    count = jnp.maximum(weights.sum(-1, keepdims=True), 1.0)
    mean = (values * weights).sum(-1, keepdims=True) / count
    var = (jnp.square(values - mean) * weights).sum(-1, keepdims=True) / count
    return jnp.where(mask, (values - mean) / (jnp.sqrt(var) + eps), 0.0)


def group_advantages(rewards: chex.Array, alive: chex.Array, gamma: float | chex.Array,
                     per_step: bool = False, eps: float = 1e-8) -> chex.Array:
    """Advantages [T, B, G] for G rollouts from each of B start states.

    Trajectory mode: every step of a rollout gets its whole discounted return, normalised
    within its group. Per-step mode: step t gets its reward-to-go, normalised over the
    group's members still in their episode at t. Padding steps get 0.
    """
    chex.assert_equal_shape([rewards, alive])
    returns = reward_to_go(rewards, alive, gamma)
    if per_step:
        return group_normalize(returns, alive, eps)
    trajectory = group_normalize(returns[0], None, eps)  # [B, G]
    return jnp.where(alive, trajectory[None], 0.0)


