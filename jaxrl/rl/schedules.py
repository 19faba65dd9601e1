"""Schedules as pure functions of a step counter (jittable, vmappable), returning values.

They return the value at `step`, not a schedule function as optax's schedules do.
"""

import chex
import jax.numpy as jnp


def linear_decay(initial: float | chex.Array, step: chex.Array, total_steps: int | chex.Array,
                 final_fraction: float | chex.Array = 0.0) -> chex.Array:
    """Decays `initial` linearly to `final_fraction * initial` over `total_steps` steps
    (a `total_steps` below 1 counts as 1); any argument may be traced or vmapped."""
    progress = jnp.clip(step / jnp.maximum(total_steps, 1), 0.0, 1.0)
    return initial * (1.0 - (1.0 - final_fraction) * progress)


def linear_anneal(start: float | chex.Array, end: float | chex.Array, step: chex.Array,
                  duration: float | chex.Array) -> chex.Array:
    """The value moving linearly from `start` to `end` over `duration` steps, then staying at
    `end` (a value at `step`, where optax.linear_schedule builds a function of the step)."""
    progress = jnp.clip(step / jnp.maximum(duration, 1e-9), 0.0, 1.0)
    return start + (end - start) * progress
