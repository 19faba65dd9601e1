"""Categorical (C51) distributional RL: the projection of a shifted return distribution."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def categorical_projection(probs: chex.Array, returns: chex.Array, discounts: chex.Array,
                           support: chex.Array) -> chex.Array:
    """Projects the distribution of `returns + discounts * Z` onto `support` (Bellemare et al.).

    probs: [..., atoms] probabilities of the next-state return at the support's atoms;
    returns, discounts: [...]; support: [atoms], evenly spaced from v_min to v_max.
    Shifted atoms are clipped into [v_min, v_max] and each one's mass is split between its
    two neighbouring atoms in proportion to closeness, so a terminal transition (discount 0)
    puts all mass next to the clipped reward. Two scatter-adds of [..., atoms] items: cheaper
    than the [..., atoms, atoms] kernel matrix on CPU.
    """
    num_atoms = support.shape[-1]
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (num_atoms - 1)
    shifted = jnp.clip(returns[..., None] + discounts[..., None] * support, v_min, v_max)
    position = (shifted - v_min) / dz  # fractional atom index in [0, atoms - 1]
    lower = jnp.clip(jnp.floor(position), 0, num_atoms - 2)
    upper_share = position - lower  # in [0, 1]; exactly 1 at v_max
    lower = lower.astype(jnp.int32)

    def project(p, low, share):
        out = jnp.zeros(num_atoms, p.dtype)
        return out.at[low].add(p * (1.0 - share)).at[low + 1].add(p * share)

    flat = lambda x: x.reshape((-1, num_atoms))
    projected = jax.vmap(project)(flat(probs), flat(lower), flat(upper_share))
    return projected.reshape(probs.shape)
