"""A sum-tree over a fixed number of leaves: O(log N) prefix-sum search and updates.

The tree is one flat array of 2 * L nodes (L = leaves rounded up to a power of two); node 1
is the root, node i has children 2i and 2i + 1, and leaf j lives at L + j. Everything is
pure and batched over indices, so it works inside `jit` and under `vmap` over a population.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def leaves_for(capacity: int) -> int:
    """The power of two that holds `capacity` leaves."""
    return 1 << max(0, (capacity - 1).bit_length())


def init(capacity: int) -> chex.Array:
    """A tree of zeros for `capacity` leaves."""
    return jnp.zeros(2 * leaves_for(capacity), jnp.float32)


def depth(tree: chex.Array) -> int:
    return (tree.shape[-1] // 2).bit_length() - 1


def total(tree: chex.Array) -> chex.Array:
    return tree[1]


def leaf_values(tree: chex.Array, indices: chex.Array) -> chex.Array:
    return tree[tree.shape[-1] // 2 + indices]


def leaves_of(tree: chex.Array) -> int:
    """Number of leaves; a leaf index equal to it is outside the tree (updates drop it)."""
    return tree.shape[-1] // 2


def update(tree: chex.Array, indices: chex.Array, values: chex.Array) -> chex.Array:
    """Sets leaves `indices` to `values` and recomputes their ancestors, level by level.

    Parents are recomputed from their children (not shifted by deltas), so repeated or
    sibling indices in one batch stay exact; with repeats the last value wins. An index of
    `leaves_of(tree)` is dropped (its ancestors are recomputed unchanged).
    """
    num_leaves = leaves_of(tree)
    dropped = indices >= num_leaves
    tree = tree.at[num_leaves + indices].set(values, mode="drop")
    nodes = jnp.where(dropped, 1, num_leaves + indices)  # a dropped index only revisits the root
    for _ in range(depth(tree)):
        nodes = jnp.maximum(nodes // 2, 1)
        tree = tree.at[nodes].set(tree[2 * nodes] + tree[2 * nodes + 1])
    return tree


def find(tree: chex.Array, masses: chex.Array) -> chex.Array:
    """For each mass m in [0, total), the leaf j whose prefix-sum interval holds m."""
    num_leaves = tree.shape[-1] // 2
    masses = jnp.minimum(masses, total(tree) * (1.0 - 1e-6))

    def descend(_, carry):
        nodes, rest = carry
        left = tree[2 * nodes]
        right = rest >= left
        return 2 * nodes + right, jnp.where(right, rest - left, rest)

    nodes, _ = jax.lax.fori_loop(0, depth(tree), descend,
                                 (jnp.ones_like(masses, jnp.int32), masses))
    return nodes - num_leaves


def sample(tree: chex.Array, key: chex.PRNGKey, batch_size: int) -> chex.Array:
    """`batch_size` leaves drawn with probability proportional to their values, stratified:
    one draw from each of `batch_size` equal slices of the total mass (lower variance)."""
    offsets = jax.random.uniform(key, (batch_size,))
    masses = (jnp.arange(batch_size) + offsets) / batch_size * total(tree)
    return find(tree, masses)
