"""Policy-gradient losses shared by PPO and GRPO."""

from __future__ import annotations

import chex
import jax.numpy as jnp


def masked_mean(x: chex.Array, mask: chex.Array | None = None) -> chex.Array:
    """Mean of `x` over the entries where `mask` is true (all of them without a mask; 0 if none)."""
    if mask is None:
        return jnp.mean(x)
    mask = mask.astype(x.dtype)
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def clipped_surrogate_loss(log_prob: chex.Array, old_log_prob: chex.Array, advantages: chex.Array,
                           *, clip_eps: float | chex.Array, mask: chex.Array | None = None,
                           return_extras: bool = False,
                           ) -> chex.Array | tuple[chex.Array, dict[str, chex.Array]]:
    """PPO's clipped objective, negated for minimisation: a scalar, or with `return_extras`
    `(loss, {"clip_fraction": ...})`. `mask` leaves out padding steps (GRPO's after an episode ended)."""
    ratio = jnp.exp(log_prob - old_log_prob)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    loss = -masked_mean(jnp.minimum(unclipped, clipped), mask)
    if not return_extras:
        return loss
    clip_fraction = masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), mask)
    return loss, {"clip_fraction": clip_fraction}


def value_loss(values: chex.Array, targets: chex.Array, *, old_values: chex.Array | None = None,
               clip_eps: float | chex.Array | None = None, mask: chex.Array | None = None,
               ) -> chex.Array:
    """Half squared error to the targets; with both `old_values` and `clip_eps`, PPO's
    pessimistic clipped form (the larger of the errors before and after clipping the change
    to within `clip_eps` of `old_values`). `mask` as in `masked_mean`."""
    if (old_values is None) != (clip_eps is None):
        given, missing = ("old_values", "clip_eps") if clip_eps is None else ("clip_eps", "old_values")
        raise ValueError(f"value_loss got {given} without {missing}: give both for PPO's clipped "
                         f"value loss, or neither for the plain squared error")
    error = jnp.square(values - targets)
    if old_values is not None:
        clipped_values = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
        error = jnp.maximum(error, jnp.square(clipped_values - targets))
    return 0.5 * masked_mean(error, mask)


def approx_kl(log_prob: chex.Array, old_log_prob: chex.Array,
              mask: chex.Array | None = None) -> chex.Array:
    """Low-variance estimator of KL(old || new): E[(r - 1) - log r] with r the ratio, over
    samples from `old`. With the roles swapped (`log_prob` = a reference policy's) it is
    GRPO's k3 estimator of KL(new || reference)."""
    log_ratio = log_prob - old_log_prob
    return masked_mean(jnp.expm1(log_ratio) - log_ratio, mask)


def huber_loss(error: chex.Array, delta: float = 1.0) -> chex.Array:
    """Elementwise Huber loss: quadratic within `delta` of zero, linear beyond."""
    abs_error = jnp.abs(error)
    quadratic = jnp.minimum(abs_error, delta)
    return 0.5 * quadratic**2 + delta * (abs_error - quadratic)
