"""Schedules as pure functions of a step counter (jittable, vmappable)."""

import chex
import jax.numpy as jnp


def linear_decay(initial: float | chex.Array, step: chex.Array, total_steps: int,
                 final_fraction: float = 0.0) -> chex.Array:
    """Decays `initial` linearly to `final_fraction * initial` over `total_steps` steps."""
    progress = jnp.clip(step / max(total_steps, 1), 0.0, 1.0)
    return initial * (1.0 - (1.0 - final_fraction) * progress)


def linear_schedule(start: float | chex.Array, end: float | chex.Array, step: chex.Array,
                    duration: float | chex.Array) -> chex.Array:
    """Moves linearly from `start` to `end` over `duration` steps, then stays at `end`."""
    progress = jnp.clip(step / jnp.maximum(duration, 1e-9), 0.0, 1.0)
    return start + (end - start) * progress
