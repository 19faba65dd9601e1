"""Policy-gradient losses shared by PPO and GRPO."""

from __future__ import annotations

import chex
import jax.numpy as jnp


def clipped_surrogate_loss(log_prob: chex.Array, old_log_prob: chex.Array, advantages: chex.Array,
                           clip_eps: float | chex.Array) -> tuple[chex.Array, chex.Array]:
    """PPO's clipped objective, negated for minimisation; also returns the fraction clipped."""
    ratio = jnp.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    clip_fraction = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
    return -jnp.mean(jnp.minimum(unclipped, clipped)), clip_fraction


def value_loss(values: chex.Array, old_values: chex.Array, targets: chex.Array,
               clip_eps: float | chex.Array, clip: bool = True) -> chex.Array:
    """Half squared error to the targets, optionally pessimistic under PPO value clipping."""
    error = jnp.square(values - targets)
    if clip:
        clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        error = jnp.maximum(error, jnp.square(clipped_values - targets))
    return 0.5 * jnp.mean(error)


def approx_kl(log_prob: chex.Array, old_log_prob: chex.Array) -> chex.Array:
    """Low-variance estimator of KL(old || new): E[(r - 1) - log r] with r the ratio."""
    log_ratio = log_prob - old_log_prob
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio)


def huber_loss(error: chex.Array, delta: float = 1.0) -> chex.Array:
    """Elementwise Huber loss: quadratic within `delta` of zero, linear beyond."""
    abs_error = jnp.abs(error)
    quadratic = jnp.minimum(abs_error, delta)
    return 0.5 * quadratic**2 + delta * (abs_error - quadratic)
